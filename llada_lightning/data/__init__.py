"""Data: document sources, tokenizer, the tokenised memmap cache, block sampling and the DataModule.

corpus.py (documents) -> tokenizer.py (BPE or tokenizer.json) -> cache.py (tokenise once, memmap)
-> blocks.py (blocks + resumable order) -> datamodule.py (Lightning wiring).

Names are imported lazily, so `llada_lightning.data.tokenizer` (used to validate configs) stays cheap
and does not import torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "iter_documents": "corpus",
    "iter_embedded_works": "corpus",
    "train_bpe": "tokenizer",
    "load_tokenizer": "tokenizer",
    "tokenizer_vocab_size": "tokenizer",
    "eos_id": "tokenizer",
    "prepare_corpus": "cache",
    "cache_key": "cache",
    "TokenizedCorpus": "cache",
    "BlockDataset": "blocks",
    "ResumableBlockSampler": "blocks",
    "epochs_seen": "blocks",
    "LMDataModule": "datamodule",
}

__all__ = [
    "BlockDataset",
    "LMDataModule",
    "ResumableBlockSampler",
    "TokenizedCorpus",
    "cache_key",
    "eos_id",
    "epochs_seen",
    "iter_documents",
    "iter_embedded_works",
    "load_tokenizer",
    "prepare_corpus",
    "tokenizer_vocab_size",
    "train_bpe",
]

if TYPE_CHECKING:
    from llada_lightning.data.blocks import BlockDataset, ResumableBlockSampler, epochs_seen
    from llada_lightning.data.cache import TokenizedCorpus, cache_key, prepare_corpus
    from llada_lightning.data.corpus import iter_documents, iter_embedded_works
    from llada_lightning.data.datamodule import LMDataModule
    from llada_lightning.data.tokenizer import eos_id, load_tokenizer, tokenizer_vocab_size, train_bpe


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"llada_lightning.data.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'llada_lightning.data' has no attribute {name!r}")
