"""Checks of an SFT run's config before anything is trained (cheap: no data is tokenised, no model built)."""

from __future__ import annotations

from pathlib import Path

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import RunConfig
from llada_lightning.sft.parent import resolve_parent
from llada_lightning.sft.records import SOURCES


def validate_sft(cfg: RunConfig) -> None:
    """One ConfigError line for the first problem of `cfg.sft` (the parent, the source, the template, sizes)."""
    s = cfg.sft
    assert s.parent is not None
    resolve_parent(s.parent)
    if s.source not in SOURCES:
        raise ConfigError(f"sft.source={s.source!r} is not one of: {', '.join(SOURCES)}")
    if s.source == "jsonl" and not s.data_files:
        raise ConfigError("sft.source=jsonl needs sft.data_files (JSONL files or globs), e.g. data=/data/chat.jsonl")
    if s.source == "hf" and not s.path:
        raise ConfigError("sft.source=hf needs sft.path (a hub dataset name, or json with sft.data_files)")
    if s.chat_template not in ("llada", "tokenizer") and not Path(s.chat_template).expanduser().is_file():
        raise ConfigError(
            f"sft.chat_template={s.chat_template!r}: no such file; use llada, tokenizer or a Jinja template file"
        )
    if not 0.0 < s.val_fraction < 1.0:
        raise ConfigError(f"sft.val_fraction={s.val_fraction} must lie in (0, 1)")
    for key in ("instructions", "max_examples"):
        value = getattr(s, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"sft.{key}={value!r} must be an integer >= 1")
