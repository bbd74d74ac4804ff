"""Data: document sources, tokenizer, the tokenised memmap cache, block sampling and the DataModule.

corpus.py (documents) -> tokenizer.py (BPE or tokenizer.json) -> cache.py (tokenise once, memmap)
-> blocks.py (blocks + resumable order) -> datamodule.py (Lightning wiring). Import from the module that
owns a name (`from llada_lightning.data.datamodule import LMDataModule`).
"""
