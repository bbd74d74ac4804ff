"""Data: document sources, tokenizer, tokenised token arrays, block sampling and the DataModule.

Small corpora, tokenised in process: corpus.py (documents) -> tokenizer.py (BPE or tokenizer.json) -> cache.py
(tokenise once, memmap). Corpus scale, tokenised beforehand: inputs.py (files, `datasets` sources) -> prepare.py
(`llada data prepare`, cli.py: parallel, resumable) -> shards.py (the format; read by memmap, data.source=tokens).
Then blocks.py (blocks, resumable order, mixtures) -> datamodule.py (Lightning wiring). Import from the module that
owns a name (`from llada_lightning.data.datamodule import LMDataModule`).
"""
