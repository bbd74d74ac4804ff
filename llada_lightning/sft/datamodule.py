"""SFTDataModule: instruction examples in the pre-training data module's seeded, resumable order.

The training stream is `data.blocks.ResumableBlockSampler` over examples (resume from the optimizer step, disjoint
rank slices), batched by `sft.dataset.pad_batch`; validation is the first `val_batches * batch_size` held-out
examples in order. The Trainer settings are those of `LMDataModule` (data/datamodule.py).
"""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from llada_lightning.config.schema import RunConfig
from llada_lightning.data.blocks import ResumableBlockSampler
from llada_lightning.data.datamodule import ResumableStream
from llada_lightning.sft.dataset import SFTCorpus, SFTExamples, pad_batch, prepare_sft_corpus


class SFTDataModule(ResumableStream, L.LightningDataModule):
    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.cfg = cfg
        t = cfg.train
        self.batch_size, self.seed, self.val_batches = t.batch_size, t.seed, t.val_batches
        self.accumulate_grad_batches = t.accumulate_grad_batches
        self.corpus: SFTCorpus | None = None

    def prepare_data(self) -> None:
        prepare_sft_corpus(self.cfg)

    def setup(self, stage: str | None = None) -> None:
        if self.corpus is None:
            self.corpus = prepare_sft_corpus(self.cfg)

    @property
    def train_dataset(self) -> SFTExamples:
        return self._corpus().train

    @property
    def val_dataset(self) -> SFTExamples:
        return self._corpus().val

    def _sampler(self, rank: int, world: int, start: object = 0) -> ResumableBlockSampler:
        return ResumableBlockSampler(
            len(self.train_dataset),
            seed=self.seed,
            batch_size=self.batch_size,
            rank=rank,
            world_size=world,
            start=start,  # type: ignore[arg-type]
        )

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        return self._loader(self.train_dataset, self._sampler(rank, world, self.consumed_samples))

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        n = min(self.val_batches * self.batch_size, len(self.val_dataset))
        return self._loader(self.val_dataset, list(range(rank, n, world)))

    def batch_length(self, step: int, micro: int, rank: int) -> int:
        """The padded length of the micro-batch (step, micro, rank): exact, from the sampler's order (FLOP counts)."""
        world = self.cfg.train.devices * self.cfg.train.num_nodes
        sampler = self._sampler(rank, world)
        start = ((step * self.accumulate_grad_batches + micro) * world + rank) * self.batch_size
        g = np.arange(start, start + self.batch_size)
        lengths = self.train_dataset.lengths
        n = len(lengths)
        blocks = [self._permutation(sampler, int(e))[i] for e, i in zip(g // n, g % n, strict=True)]
        return int(lengths[blocks].max())

    def _permutation(self, sampler: ResumableBlockSampler, epoch: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_permutations", {})
        if epoch not in cache:
            cache.clear()  # the stream moves forward: one epoch (two at a boundary) is enough
            cache[epoch] = sampler.permutation(epoch)
        return cache[epoch]

    # ---- what the rest of the project reads (as LMDataModule) ---------------------------------------------
    @property
    def eos_id(self) -> int:
        return self._corpus().eos_id

    @property
    def tokenizer_path(self) -> Path:
        return self._corpus().tokenizer_path

    @property
    def vocab_size(self) -> int:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.tokenizer_path)).get_vocab_size(with_added_tokens=True)

    def bytes_per_token(self, split: str = "val") -> float:
        return self._corpus().bytes_per_token(split)

    @property
    def train_blocks(self) -> int:
        return len(self.train_dataset)

    @property
    def unique_tokens(self) -> int:
        return int(self.train_dataset.offsets[-1])

    def _corpus(self) -> SFTCorpus:
        if self.corpus is None:
            raise RuntimeError("SFTDataModule.setup() has not been called")
        return self.corpus

    def _loader(self, dataset: SFTExamples, sampler: object) -> DataLoader:
        workers = self.cfg.data.num_workers
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,  # type: ignore[arg-type]
            collate_fn=functools.partial(pad_batch, eos_id=self.eos_id),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )
