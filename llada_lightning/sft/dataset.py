"""Conversations tokenised once into cached arrays, split by conversation, and batched with EOS padding.

Layout of `<cache_dir>/sft-<key>/`: per split `<split>.tokens.npy` (uint32, every example's prompt then answer,
concatenated), `<split>.offsets.npy` (int64 [N + 1]) and `<split>.prompt_lengths.npy` (int64 [N]);
`tokenizer.json` (the parent's, with the chat markers added) and `meta.json`. `key` hashes every input: the
source, the fields, the chat template, the tokenizer, `data.seq_len` (the longest example kept), the split.

A conversation is held out when the hash of its text falls below `sft.val_fraction` (as pre-training documents,
data/cache.py), so all the examples of one dialogue land in one split. A batch is the examples right-padded with
EOS to the batch's longest (LLaDA GUIDELINES.md: the padding EOS are answer tokens).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import RunConfig
from llada_lightning.data.cache import build_once, cache_root, data_file_spec, doc_unit, file_sha256
from llada_lightning.sft.chat import ChatTemplate, load_template, split_turns, tokenizer_config_home
from llada_lightning.sft.parent import resolve_parent, sft_tokenizer
from llada_lightning.sft.records import iter_conversations

FORMAT_VERSION = 1
SPLITS = ("train", "val")


@dataclass
class SFTExamples(Dataset):
    """One split: example i is `tokens[offsets[i]:offsets[i + 1]]`, its first `prompt_lengths[i]` the prompt."""

    tokens: np.ndarray
    offsets: np.ndarray
    prompt_lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.prompt_lengths)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        ids = torch.from_numpy(self.tokens[self.offsets[i] : self.offsets[i + 1]].astype(np.int64))
        return ids, int(self.prompt_lengths[i])

    @classmethod
    def from_lists(cls, examples: list[tuple[list[int], int]]) -> SFTExamples:
        lengths = np.array([len(ids) for ids, _ in examples], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = [t for ids, _ in examples for t in ids]
        tokens = np.array(flat, dtype=np.uint32)
        return cls(tokens, offsets, np.array([p for _, p in examples], dtype=np.int64))


def pad_batch(items: list[tuple[torch.Tensor, int]], eos_id: int) -> dict[str, torch.Tensor]:
    """`input_ids` [B, T] right-padded with EOS to the longest example, `prompt_lengths` [B], `answer_lengths` [B]
    (each example's own answer, its final EOS included, without the padding)."""
    length = max(len(ids) for ids, _ in items)
    input_ids = torch.full((len(items), length), eos_id, dtype=torch.long)
    for row, (ids, _) in enumerate(items):
        input_ids[row, : len(ids)] = ids
    prompts = torch.tensor([p for _, p in items], dtype=torch.long)
    answers = torch.tensor([len(ids) - p for ids, p in items], dtype=torch.long)
    return {"input_ids": input_ids, "prompt_lengths": prompts, "answer_lengths": answers}


def encode_conversation(template: ChatTemplate, messages: list[dict[str, str]]) -> list[tuple[list[int], int]]:
    """The (ids, prompt length) of each assistant turn of one conversation (`chat.split_turns`)."""
    out = []
    for history, answer in split_turns(messages):
        prompt = template.encode_prompt(history)
        out.append(([*prompt, *template.encode_answer(history, answer)], len(prompt)))
    return out


def cache_spec(cfg: RunConfig, tokenizer_json: str) -> dict[str, Any]:
    s = cfg.sft
    spec: dict[str, Any] = {k: v for k, v in asdict(s).items() if k not in ("parent", "data_files", "chat_template")}
    files = [s.data_files] if isinstance(s.data_files, str) else s.data_files
    spec["data_files"] = None if files is None else [data_file_spec(str(f)) for f in files]
    template = s.chat_template
    if template not in ("llada", "tokenizer") and Path(template).expanduser().is_file():
        template = file_sha256(Path(template).expanduser())
    spec.update(
        format_version=FORMAT_VERSION,
        chat_template=template,
        tokenizer=hashlib.sha256(tokenizer_json.encode()).hexdigest(),
        max_length=cfg.data.seq_len,
    )
    return spec


def _build(cfg: RunConfig, directory: Path, tokenizer: Any, template: ChatTemplate) -> dict[str, Any]:
    started = time.perf_counter()
    split_examples: dict[str, list[tuple[list[int], int]]] = {"train": [], "val": []}
    units, per_conversation = [], []
    dropped = 0
    for messages in iter_conversations(cfg.sft):
        units.append(doc_unit(json.dumps(messages, sort_keys=True)))
        kept = []
        for ids, prompt_len in encode_conversation(template, messages):
            if len(ids) > cfg.data.seq_len:
                dropped += 1
            else:
                kept.append((ids, prompt_len))
        per_conversation.append(kept)
    if not units:
        raise ConfigError("the SFT data holds no conversation; check sft.source / sft.data_files")
    is_val = [u < cfg.sft.val_fraction for u in units]
    if not any(is_val):
        is_val[int(np.argmin(units))] = True  # validation is never empty (as data/cache.py)
    for kept, val in zip(per_conversation, is_val, strict=True):
        split_examples["val" if val else "train"].extend(kept)
    meta: dict[str, Any] = {"format_version": FORMAT_VERSION, "eos_id": template.eos_id, "dropped": dropped}
    meta["splits"] = {}
    for split, examples in split_examples.items():
        if not examples:
            raise ConfigError(
                f"no {'training' if split == 'train' else 'validation'} example of at most data.seq_len="
                f"{cfg.data.seq_len} tokens ({dropped} longer ones dropped); raise data.seq_len (up to "
                f"model.max_seq_len={cfg.model.max_seq_len}), add data or change sft.val_fraction"
            )
        data = SFTExamples.from_lists(examples)
        np.save(directory / f"{split}.tokens.npy", data.tokens)
        np.save(directory / f"{split}.offsets.npy", data.offsets)
        np.save(directory / f"{split}.prompt_lengths.npy", data.prompt_lengths)
        answer_tokens = int((data.lengths - data.prompt_lengths).sum())
        answer_bytes = sum(
            len(tokenizer.decode(ids[p:].tolist(), skip_special_tokens=True).encode()) for ids, p in iter_rows(data)
        )
        meta["splits"][split] = {
            "n_examples": len(data),
            "n_tokens": int(data.offsets[-1]),
            "n_answer_tokens": answer_tokens,
            "n_answer_bytes": answer_bytes,
        }
    tokenizer.save(str(directory / "tokenizer.json"))
    meta["build_seconds"] = round(time.perf_counter() - started, 3)
    with open(directory / "meta.json", "w") as f:
        json.dump(meta, f, indent=2)
    return meta


def iter_rows(data: SFTExamples):
    for i in range(len(data)):
        yield data.tokens[data.offsets[i] : data.offsets[i + 1]].astype(np.int64), int(data.prompt_lengths[i])


class SFTCorpus:
    """A finished SFT cache directory: `.train` / `.val` examples, `.meta`, `.tokenizer_path`, `.eos_id`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.meta: dict[str, Any] = json.loads((directory / "meta.json").read_text())
        self.train, self.val = (self._load(s) for s in SPLITS)

    def _load(self, split: str) -> SFTExamples:
        arrays = [np.load(self.directory / f"{split}.{name}.npy") for name in ("tokens", "offsets", "prompt_lengths")]
        return SFTExamples(*arrays)

    @property
    def tokenizer_path(self) -> Path:
        return self.directory / "tokenizer.json"

    @property
    def eos_id(self) -> int:
        return int(self.meta["eos_id"])

    def bytes_per_token(self, split: str) -> float:
        """UTF-8 bytes per answer token of the split (the validation loss is per answer token)."""
        s = self.meta["splits"][split]
        return s["n_answer_bytes"] / max(1, s["n_answer_tokens"])


def prepare_sft_corpus(cfg: RunConfig) -> SFTCorpus:
    """Tokenise `cfg`'s conversations with its parent's tokenizer unless cached, then open the cache."""
    if cfg.sft.parent is None:
        raise ConfigError("not an SFT run: set sft.parent (or use `llada sft PARENT ...`)")
    parent = resolve_parent(cfg.sft.parent)
    tokenizer, eos = sft_tokenizer(parent, cfg.sft.chat_template)
    home = tokenizer_config_home(cfg.data.tokenizer, parent.tokenizer_path)
    template = load_template(cfg.sft.chat_template, tokenizer, eos, home)
    spec = cache_spec(cfg, tokenizer.to_str())
    key = "sft-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    root = cache_root(cfg.data)
    return SFTCorpus(build_once(root, key, lambda tmp: _build(cfg, tmp, tokenizer, template), "the SFT data"))
