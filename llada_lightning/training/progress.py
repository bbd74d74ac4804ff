"""Progress reporting: Lightning's rich bar on a terminal, one plain line per log interval elsewhere
(Slurm logs and CI output stay readable)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar

from llada_lightning.io import atomic_write_json


class LineProgress(Callback):
    """Print `step/total loss lr tok/s` every `every` optimizer steps."""

    def __init__(self, every: int, total: int) -> None:
        self.every = max(1, every)
        self.total = total
        self._t0 = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step % self.every or (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        m = trainer.callback_metrics
        loss = float(m["train/loss"]) if "train/loss" in m else float("nan")
        tps = float(m.get("perf/tokens_per_s", float("nan")))
        print(
            f"step {step}/{self.total}  loss {loss:.4f}  {tps:,.0f} tok/s  {time.perf_counter() - self._t0:.0f}s",
            flush=True,
        )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking and "val/loss" in trainer.callback_metrics:
            m = trainer.callback_metrics
            print(
                f"step {trainer.global_step}/{self.total}  val/loss {float(m['val/loss']):.4f}  "
                f"val/bpb {float(m['val/bpb']):.4f}",
                flush=True,
            )


class ProgressFile(Callback):
    """`<run_dir>/progress.json`: step, total, latest losses; read by `llada sweep status` (rank 0, atomic)."""

    def __init__(self, path: Path, every: int, total: int) -> None:
        self.path = path
        self.every = max(1, every)
        self.total = total

    def _write(self, trainer: L.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        record = {"step": trainer.global_step, "total": self.total, "time": time.time()}
        for key in ("train/loss", "val/loss", "val/bpb"):
            if key in m:
                record[key] = float(m[key])
        atomic_write_json(self.path, record)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % self.every == 0 and (batch_idx + 1) % trainer.accumulate_grad_batches == 0:
            self._write(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(trainer)


def progress_callback(enabled: bool, every: int, total: int) -> Callback | None:
    if not enabled:
        return None
    if sys.stdout.isatty():
        return RichProgressBar()
    return LineProgress(every, total)
