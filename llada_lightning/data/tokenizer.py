"""Tokenizers: a byte-level BPE trained on the corpus (the default) or any HF `tokenizer.json`.

The byte-level BPE is GPT-2's recipe (HF `tokenizers`): the 256 byte symbols are always in the vocabulary,
so any text encodes and decodes losslessly, and "<|endoftext|>" (id 0) separates documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import DataConfig

EOS_TOKEN = "<|endoftext|>"
# Looked up in order in a user tokenizer when data.eos_token is not set.
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|eos|>", "[SEP]", "<|im_end|>")
# 256 byte symbols + the EOS special token (no merge at all: a byte-level model).
MIN_BPE_VOCAB = 257
# What to do about a bad data.tokenizer file (the inference loader passes its own fix).
TOKENIZER_FIX = "set data.tokenizer to the path of a HF tokenizer.json, or to 'bpe' to train one on the corpus"


def _too_small(vocab_size: int) -> ConfigError:
    """The error for a BPE vocabulary that cannot hold the 256 bytes and the EOS token."""
    return ConfigError(
        f"data.vocab_size={vocab_size} is too small for a byte-level BPE; set data.vocab_size>={MIN_BPE_VOCAB}"
    )


def first_line(exc: BaseException) -> str:
    """The first line of `exc`'s message (at most 200 characters), or its type name when it has none."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE with `vocab_size` entries, "<|endoftext|>" (id 0) included.

    Deterministic for the same texts in the same order. A small corpus may run out of merges and
    produce fewer entries than asked; ids are always < vocab_size.
    """
    if vocab_size < MIN_BPE_VOCAB:
        raise _too_small(vocab_size)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_tokenizer(path: str | Path, *, what: str | None = None, fix: str = TOKENIZER_FIX) -> Tokenizer:
    """Load a `tokenizer.json`; a missing or unreadable file is a one-line ConfigError naming it and `fix`."""
    p = Path(path).expanduser()
    what = what or f"data.tokenizer={str(path)!r}"
    if not p.is_file():
        raise ConfigError(f"{what}: no such tokenizer file; {fix}")
    try:
        return Tokenizer.from_file(str(p))
    except Exception as exc:  # `tokenizers` raises a bare Exception for bad JSON, a foreign file, no permission
        raise ConfigError(f"{what}: not a readable tokenizer.json ({first_line(exc)}); {fix}") from exc


def eos_id(tok: Tokenizer, eos_token: str | None = None) -> int:
    """The id of the document separator: `eos_token` if given, else the first of EOS_CANDIDATES found."""
    candidates = (eos_token,) if eos_token is not None else EOS_CANDIDATES
    for token in candidates:
        i = tok.token_to_id(token)
        if i is not None:
            return i
    if eos_token is not None:
        raise ConfigError(
            f"data.eos_token={eos_token!r} is not in the tokenizer's vocabulary; set data.eos_token to one of its "
            "tokens (or null to look for the usual ones)"
        )
    raise ConfigError(f"the tokenizer has none of the usual end-of-text tokens {EOS_CANDIDATES}; set data.eos_token")


def tokenizer_vocab_size(cfg: DataConfig) -> int:
    """The id space of `cfg`'s tokenizer, without training anything (cheap; for config validation).

    bpe: `cfg.vocab_size`; a tokenizer.json: its `get_vocab_size()` (added tokens included).
    """
    if cfg.tokenizer == "bpe":
        if cfg.vocab_size < MIN_BPE_VOCAB:
            raise _too_small(cfg.vocab_size)
        return cfg.vocab_size
    return load_tokenizer(cfg.tokenizer).get_vocab_size(with_added_tokens=True)
