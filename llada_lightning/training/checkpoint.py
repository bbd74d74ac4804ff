"""Checkpoints that survive SIGKILL: written to a temporary file, then renamed over `last.ckpt`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

LAST = "last.ckpt"


class AtomicCheckpoint(Callback):
    """Save `<dir>/last.ckpt` every `every_n_steps` optimizer steps and at the end of training.

    Saving happens at a step boundary (after the optimizer step), so a resumed run repeats no batch.
    A kill during the write leaves the previous `last.ckpt` intact.
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self._last_saved: int | None = None
        self.save_requested = False  # set from a signal handler; honoured at the next step boundary

    @property
    def last_path(self) -> Path:
        return self.dirpath / LAST

    def save(self, trainer: L.Trainer) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        tmp = self.dirpath / f".{LAST}.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, self.last_path)
        trainer.strategy.barrier("atomic_checkpoint")
        self._last_saved = trainer.global_step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_saved = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._last_saved:  # inside a gradient-accumulation window, or already saved
            return
        due = self.every_n_steps > 0 and step % self.every_n_steps == 0
        if due or self.save_requested:
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_saved:
            self.save(trainer)
