"""LMDataModule: wires the tokenised data, the block dataset and the resumable sampler into Lightning.

The tokenised data is the in-process cache (cache.py: data.source=embedded|hf, small corpora) or the shards of
`llada data prepare` (shards.py: data.source=tokens, data.paths; several paths are a weighted mixture, blocks.Mixture).

Resume is derived from the optimizer step, not from a data state: the training stream starts at
`trainer.global_step * accumulate_grad_batches * batch_size * world_size` global samples, so a run
restored from any checkpoint reads exactly the batches an uninterrupted run would have read.
The Trainer must be built with `use_distributed_sampler=False` (this module shards by itself) and,
since the training loader is infinite, with `max_steps` and an integer `val_check_interval`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import DataConfig
from llada_lightning.data.blocks import (
    BlockDataset,
    Mixture,
    MixtureBlockSampler,
    ResumableBlockSampler,
    epochs_seen,
    unique_subset,
)
from llada_lightning.data.cache import TokenizedCorpus, prepare_corpus
from llada_lightning.data.shards import PreparedCorpus, prepared_vocab_size
from llada_lightning.data.tokenizer import tokenizer_vocab_size

log = logging.getLogger(__name__)

# What to do when a split cannot fill one block of data.seq_len tokens.
TOO_SHORT_FIX = {
    "training": "lower data.seq_len or use more data (data.data_files, data.max_documents)",
    "validation": "lower data.seq_len or raise data.val_fraction",
}


def _check_blocks(train: BlockDataset, val: BlockDataset, where: str = "") -> None:
    """Both splits must hold at least one block of `data.seq_len` tokens."""
    for name, dataset in (("training", train), ("validation", val)):
        if len(dataset) == 0:
            raise ConfigError(
                f"the {name} split{where} has {len(dataset.tokens)} tokens, fewer than one block of "
                f"data.seq_len={dataset.seq_len}; {TOO_SHORT_FIX[name]}"
            )


def _unique_blocks(train: BlockDataset, cfg: DataConfig, seed: int) -> Dataset:
    """The training blocks a run may see: all of them, or the seeded subset of data.unique_tokens tokens."""
    if cfg.unique_tokens is None:
        return train
    available = len(train) * train.seq_len
    if cfg.unique_tokens > available:
        raise ConfigError(
            f"data.unique_tokens={cfg.unique_tokens} exceeds the training split ({available} tokens in "
            f"{len(train)} blocks of data.seq_len={train.seq_len}); lower it or use more data"
        )
    return Subset(train, unique_subset(len(train), cfg.unique_tokens // train.seq_len, seed).tolist())


class ResumableStream:
    """What a data module whose training stream resumes from the optimizer step shares (mixed into
    LMDataModule and sft.datamodule.SFTDataModule): the samples consumed, the epochs they make, the rank."""

    trainer: L.Trainer | None
    batch_size: int
    accumulate_grad_batches: int
    train_blocks: int

    def consumed_samples(self) -> int:
        """Training samples the whole job has consumed: derived from the restored optimizer step."""
        trainer = self.trainer
        if trainer is None:
            return 0
        return trainer.global_step * self.accumulate_grad_batches * self.batch_size * trainer.world_size

    def samples_consumed_to_epochs(self, n: int) -> float:
        """Data epochs that `n` training samples (blocks or examples) represent."""
        return epochs_seen(n, self.train_blocks)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size


class LMDataModule(ResumableStream, L.LightningDataModule):
    """Training blocks in a seeded, resumable order; a fixed set of validation blocks."""

    def __init__(
        self,
        cfg: DataConfig,
        *,
        batch_size: int,
        seed: int,
        val_batches: int,
        accumulate_grad_batches: int = 1,
    ):
        super().__init__()
        self.cfg = cfg
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.val_batches = int(val_batches)
        self.accumulate_grad_batches = int(accumulate_grad_batches)
        self.corpus: TokenizedCorpus | PreparedCorpus | None = None
        self.train_dataset: Dataset | None = None  # the blocks of all training data, or its unique-token subset
        self.val_dataset: Dataset | None = None
        self.mixture: Mixture | None = None  # several data.paths: which set each sample draws from
        self.set_blocks: list[int] = []  # with a mixture: each set's training blocks (concatenated in train_dataset)
        self._bytes_per_token: dict[str, float] = {}  # prepared data: per split

    # ---- Lightning hooks -------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        if self.cfg.source != "tokens":  # prepared shards are read as they are
            prepare_corpus(self.cfg)  # builds the cache once (locked); a no-op when it exists

    def setup(self, stage: str | None = None) -> None:
        if self.corpus is None and self.cfg.source == "tokens":
            self._setup_prepared()
        elif self.corpus is None:
            corpus = prepare_corpus(self.cfg)
            train, val = BlockDataset(corpus.train, self.cfg.seq_len), BlockDataset(corpus.val, self.cfg.seq_len)
            _check_blocks(train, val)  # before anything is kept: a failed setup leaves the module unset
            subset = _unique_blocks(train, self.cfg, self.seed)
            self.corpus, self.train_dataset, self.val_dataset = corpus, subset, val
            log.info("%r: %d train (of %d) / %d val blocks", self.corpus, len(subset), len(train), len(val))

    def _setup_prepared(self) -> None:
        """data.source=tokens: each path's training and validation streams; several paths make a mixture."""
        corpus = PreparedCorpus(self.cfg.paths or [], self.cfg.val_fraction)
        seq_len = self.cfg.seq_len
        trains = [BlockDataset(s.train, seq_len) for s in corpus.sets]
        vals = [BlockDataset(s.val, seq_len) for s in corpus.sets]
        for k, (train, val) in enumerate(zip(trains, vals, strict=True)):
            _check_blocks(train, val, f" of data.paths[{k}]" if len(trains) > 1 else "")
        if len(trains) == 1:
            train_dataset: Dataset = _unique_blocks(trains[0], self.cfg, self.seed)
            val_dataset: Dataset = vals[0]
            bytes_per_token = {split: corpus.sets[0].bytes_per_token(split) for split in ("train", "val")}
        else:
            mixture = Mixture(self.cfg.weights or [len(t) for t in trains])
            train_dataset = ConcatDataset(trains)
            # validation: each set's first blocks, interleaved by the mixture up to what val_dataloader reads
            picks = mixture.interleave([len(v) for v in vals], self.val_batches * self.batch_size)
            offsets = [0, *np.cumsum([len(v) for v in vals])[:-1].tolist()]
            val_dataset = Subset(ConcatDataset(vals), [offsets[k] + j for k, j in picks])
            shares = {
                "train": mixture.shares,
                "val": np.bincount([k for k, _ in picks], minlength=len(vals)) / len(picks),
            }
            bytes_per_token = {  # each set's bytes per token, weighted by its share of the split's blocks
                split: float(sum(f * s.bytes_per_token(split) for f, s in zip(shares[split], corpus.sets, strict=True)))
                for split in ("train", "val")
            }
            self.mixture, self.set_blocks = mixture, [len(t) for t in trains]
            log.info("mixture of %d sets, shares %s", len(trains), mixture.shares.round(4).tolist())
        self.corpus, self.train_dataset, self.val_dataset = corpus, train_dataset, val_dataset
        self._bytes_per_token = bytes_per_token
        log.info("%r: %d train / %d val blocks", corpus, len(train_dataset), len(val_dataset))

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        rank, world = self._rank_world()
        shard = {"seed": self.seed, "batch_size": self.batch_size, "rank": rank, "world_size": world}
        if self.mixture is not None:
            sampler = MixtureBlockSampler(self.set_blocks, self.mixture, **shard, start=self.consumed_samples)
        else:
            sampler = ResumableBlockSampler(len(self.train_dataset), **shard, start=self.consumed_samples)
        return self._loader(self.train_dataset, sampler)

    def val_dataloader(self) -> DataLoader:
        """The first `val_batches * batch_size` validation blocks in order, split across ranks."""
        self._require_setup()
        rank, world = self._rank_world()
        n = min(self.val_batches * self.batch_size, len(self.val_dataset))
        # Strided shard without padding: every block is evaluated exactly once over all ranks.
        return self._loader(self.val_dataset, list(range(rank, n, world)))

    # ---- what the rest of the project reads -------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """The token id space (the model's output classes); available before setup (cheap)."""
        if self.corpus is not None:
            return self.corpus.vocab_size
        if self.cfg.source == "tokens":
            return prepared_vocab_size((self.cfg.paths or ["?"])[0])
        return tokenizer_vocab_size(self.cfg)

    @property
    def eos_id(self) -> int:
        self._require_setup()
        return self.corpus.eos_id

    @property
    def tokenizer_path(self) -> Path:
        self._require_setup()
        return self.corpus.tokenizer_path

    def bytes_per_token(self, split: str = "val") -> float:
        """UTF-8 bytes per token of the split's text (a mixture: the sets' values weighted by their shares of it)."""
        self._require_setup()
        if isinstance(self.corpus, PreparedCorpus):
            return self._bytes_per_token[split]
        return self.corpus.bytes_per_token(split)

    @property
    def train_blocks(self) -> int:
        """The training blocks the run draws from (the unique-token subset when data.unique_tokens is set)."""
        self._require_setup()
        return len(self.train_dataset)

    @property
    def unique_tokens(self) -> int:
        """Distinct training tokens the run draws from: data.unique_tokens, or every whole block of the split."""
        return self.train_blocks * self.cfg.seq_len

    # ---- helpers --------------------------------------------------------------------------------------

    def _require_setup(self) -> None:
        if self.corpus is None:
            raise RuntimeError("LMDataModule.setup() has not been called")

    def _loader(self, dataset: Dataset, sampler) -> DataLoader:
        workers = self.cfg.num_workers
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False,
            drop_last=False,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )
