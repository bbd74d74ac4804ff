"""Tokenizers: a byte-level BPE trained on the corpus (the default) or any HF `tokenizer.json`.

The byte-level BPE is GPT-2's recipe (HF `tokenizers`): the 256 byte symbols are always in the vocabulary,
so any text encodes and decodes losslessly, and "<|endoftext|>" (id 0) separates documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from llada_lightning.config.schema import DataConfig

EOS_TOKEN = "<|endoftext|>"
# Looked up in order in a user tokenizer when data.eos_token is not set.
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|eos|>", "[SEP]", "<|im_end|>")
# 256 byte symbols + the EOS special token (no merge at all: a byte-level model).
MIN_BPE_VOCAB = 257


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE with `vocab_size` entries, "<|endoftext|>" (id 0) included.

    Deterministic for the same texts in the same order. A small corpus may run out of merges and
    produce fewer entries than asked; ids are always < vocab_size.
    """
    if vocab_size < MIN_BPE_VOCAB:
        raise ValueError(f"data.vocab_size={vocab_size} is too small for a byte-level BPE (>= {MIN_BPE_VOCAB})")
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


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a `tokenizer.json`; FileNotFoundError names the `data.tokenizer` setting."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"data.tokenizer={str(path)!r}: no such tokenizer file "
            "(data.tokenizer is 'bpe' or the path to a HF tokenizer.json)"
        )
    return Tokenizer.from_file(str(p))


def eos_id(tok: Tokenizer, eos_token: str | None = None) -> int:
    """The id of the document separator: `eos_token` if given, else the first of EOS_CANDIDATES found."""
    candidates = (eos_token,) if eos_token is not None else EOS_CANDIDATES
    for token in candidates:
        i = tok.token_to_id(token)
        if i is not None:
            return i
    if eos_token is not None:
        raise ValueError(f"data.eos_token={eos_token!r} is not in the tokenizer's vocabulary")
    raise ValueError(f"the tokenizer has none of the usual end-of-text tokens {EOS_CANDIDATES}; set data.eos_token")


def tokenizer_vocab_size(cfg: DataConfig) -> int:
    """The id space of `cfg`'s tokenizer, without training anything (cheap; for config validation).

    bpe: `cfg.vocab_size`; a tokenizer.json: its `get_vocab_size()` (added tokens included).
    """
    if cfg.tokenizer == "bpe":
        if cfg.vocab_size < MIN_BPE_VOCAB:
            raise ValueError(f"data.vocab_size={cfg.vocab_size} is too small for a byte-level BPE (>= {MIN_BPE_VOCAB})")
        return cfg.vocab_size
    return load_tokenizer(cfg.tokenizer).get_vocab_size(with_added_tokens=True)
