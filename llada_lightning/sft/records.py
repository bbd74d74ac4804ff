"""Instruction data in: conversations from the built-in set, local JSONL files or any `datasets` source.

A record is `{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}` (`sft.messages_field`), or a
prompt/response pair (`sft.prompt_field`, `sft.response_field`, optional `sft.system_field`), which becomes a
one-turn conversation. Every problem is one ConfigError naming the file and line (or record) and the fix.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from itertools import islice
from typing import Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import SFTConfig
from llada_lightning.data.tokenizer import first_line
from llada_lightning.sft.chat import ROLES, Message

SOURCES = ("instructions", "jsonl", "hf")


def conversation(record: Any, cfg: SFTConfig, where: str) -> list[Message]:
    """The messages of one record (see the module docstring), checked."""
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    if cfg.messages_field in record:
        messages = record[cfg.messages_field]
        if not isinstance(messages, list) or not messages:
            raise ConfigError(f"{where}: {cfg.messages_field!r} must be a non-empty list of {{role, content}}")
    elif cfg.prompt_field in record and cfg.response_field in record:
        messages = [
            {"role": "user", "content": record[cfg.prompt_field]},
            {"role": "assistant", "content": record[cfg.response_field]},
        ]
        if record.get(cfg.system_field):
            messages.insert(0, {"role": "system", "content": record[cfg.system_field]})
    else:
        raise ConfigError(
            f"{where}: the record has neither {cfg.messages_field!r} nor {cfg.prompt_field!r}/{cfg.response_field!r} "
            f"(keys: {sorted(record)[:8]}); set sft.messages_field or sft.prompt_field/sft.response_field"
        )
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ConfigError(
                f"{where}: message {i} must be {{'role': one of {', '.join(ROLES)}, 'content': a string}}, got "
                f"{str(m)[:80]}"
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _files(cfg: SFTConfig) -> list[str]:
    entries = cfg.data_files
    if isinstance(entries, str):
        entries = [entries]
    if not entries:
        raise ConfigError("sft.source=jsonl needs sft.data_files (JSONL files or globs), e.g. data=/data/chat.jsonl")
    files = []
    for entry in entries:
        matches = sorted(glob.glob(os.path.expanduser(str(entry))))
        if not matches:
            raise ConfigError(f"sft.data_files: no file matches {entry!r}; give existing JSONL files or globs")
        files.extend(matches)
    return files


def _iter_jsonl(cfg: SFTConfig) -> Iterator[list[Message]]:
    for path in _files(cfg):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{n}: not valid JSON ({exc.msg}); fix the line or remove it") from exc
                yield conversation(record, cfg, f"{path}:{n}")


def _iter_hf(cfg: SFTConfig) -> Iterator[list[Message]]:
    if not cfg.path:
        raise ConfigError("sft.source=hf needs sft.path: a hub dataset name, or a builder (json) with sft.data_files")
    import datasets

    try:
        ds = datasets.load_dataset(cfg.path, cfg.name, data_files=cfg.data_files, split=cfg.split)
    except (OSError, ValueError, datasets.exceptions.DatasetGenerationError) as exc:
        raise ConfigError(
            f"sft.path={cfg.path!r} (name {cfg.name!r}, split {cfg.split!r}, data_files {cfg.data_files}): "
            f"{first_line(exc)}; give a dataset that exists locally (offline) or local JSONL files"
        ) from exc
    for i, record in enumerate(ds):
        yield conversation(record, cfg, f"{cfg.path} record {i}")


def iter_conversations(cfg: SFTConfig) -> Iterator[list[Message]]:
    """The conversations of `cfg` in a fixed order (at most `sft.max_examples`)."""
    if cfg.source == "instructions":
        from llada_lightning.sft.instructions import instruction_set

        it: Iterator[list[Message]] = iter(instruction_set(cfg.instructions))
    elif cfg.source == "jsonl":
        it = _iter_jsonl(cfg)
    elif cfg.source == "hf":
        it = _iter_hf(cfg)
    else:
        raise ConfigError(f"sft.source={cfg.source!r} is not one of {', '.join(SOURCES)}")
    return islice(it, cfg.max_examples) if cfg.max_examples is not None else it


def write_jsonl(path: str, conversations: list[list[Message]]) -> None:
    """Write conversations as `{"messages": [...]}` lines (atomically)."""
    from llada_lightning.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps({"messages": c}) + "\n" for c in conversations))
