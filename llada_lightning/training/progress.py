"""Progress reporting: a rich bar counting optimizer steps on a terminal, one plain line per log interval elsewhere
(Slurm logs and CI output stay readable), the start banner, and `progress.json`.

Every step shown is the number of optimizer steps completed (`trainer.global_step` after the step), as in
TensorBoard (see `BaseModule.on_train_batch_end`).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar

from llada_lightning.io import atomic_write_json

if TYPE_CHECKING:
    from llada_lightning.training.modules import BaseModule


def format_duration(seconds: float) -> str:
    """A duration at a glance: `42s`, `3m10s`, `1h02m`, `2d03h`."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_count(x: float) -> str:
    """A count at a glance, three significant digits: `812`, `8.19K`, `1.2M`, `3.3B`, `1.5T`."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div * 0.9995:  # 999,960 is "1M", not "1e+03K"
            return f"{x / div:.3g}{suffix}"
    return f"{x:.0f}"


def format_flops(x: float) -> str:
    """FLOPs in short scientific notation: `1.2e13`."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def eta_seconds(done: int, remaining: int, elapsed: float) -> float | None:
    """Seconds left at the rate measured so far (`done` steps in `elapsed` seconds); None before any step."""
    if done <= 0 or elapsed <= 0:
        return None
    return remaining * elapsed / done


def start_banner(module: BaseModule, steps: int, run_dir: Path) -> str:
    """The one line printed when training starts: what runs, for how long, at what cost, where."""
    cfg = module.cfg
    convention = cfg.train.flops_convention
    tokens = steps * module.tokens_per_step
    flops = module.flops_per_token[convention] * tokens
    return (
        f"llada train: {cfg.objective.name} {cfg.model.name} (N={format_count(module.n_nonemb)} non-emb), "
        f"{steps} steps x {module.tokens_per_step:,} tokens = {format_count(tokens)} tokens, "
        f"{format_flops(flops)} FLOPs ({convention}) -> {run_dir}"
    )


def checkpoint_step(path: Path) -> int | None:
    """The optimizer steps completed in a Lightning checkpoint (memory-mapped: the weights are not read)."""
    import torch

    try:
        meta = path / "meta.pt" if path.is_dir() else path  # a sharded checkpoint (fsdp): Lightning's meta.pt
        checkpoint = torch.load(meta, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable here means Lightning reports it when it restores
        return None
    step = checkpoint.get("global_step") if isinstance(checkpoint, dict) else None
    return int(step) if step is not None else None


def resume_line(path: Path, steps: int) -> str:
    """The line printed when a run resumes from `path`."""
    step = checkpoint_step(path)
    at = f"at step {step} of {steps}" if step is not None else f"({steps} steps)"
    return f"resuming {at} from {path}"


def is_log_step(trainer: L.Trainer, batch_idx: int, every: int) -> bool:
    """Whether this micro-batch ended an optimizer step that completes a log interval of `every` steps."""
    return trainer.global_step % every == 0 and (batch_idx + 1) % trainer.accumulate_grad_batches == 0


def interval_metrics(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
    """This log interval's training metrics: the module's (Lightning calls the callbacks' `on_train_batch_end`
    before the module's, which logs them), else the finite training values among `trainer.callback_metrics`."""
    metrics = getattr(pl_module, "interval_metrics", None)
    if callable(metrics):
        return dict(metrics())
    found = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "perf/"))}
    return {k: v for k, v in found.items() if math.isfinite(v)}


class LineProgress(Callback):
    """Print `step k/N  loss  tok/s  elapsed  eta` every `every` optimizer steps (rank 0)."""

    def __init__(self, every: int, total: int) -> None:
        self.every = max(1, every)
        self.total = total
        self._t0 = time.perf_counter()
        self._step0 = 0  # the step this segment started from (a resumed run's checkpoint step)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()
        self._step0 = trainer.global_step

    def line(self, step: int, metrics: dict[str, float], elapsed: float) -> str:
        """One progress line; values not known yet (tokens/s before a first interval) are left out, never nan."""
        parts = [f"step {step}/{self.total}"]
        if "train/loss" in metrics:
            parts.append(f"loss {metrics['train/loss']:.4f}")
        tps = metrics.get("perf/tokens_per_s")
        if tps is not None and math.isfinite(tps):
            parts.append(f"{tps:,.0f} tok/s")
        mfu = metrics.get("perf/mfu")
        if mfu is not None and math.isfinite(mfu):
            parts.append(f"MFU {100 * mfu:.1f}%")
        parts.append(f"elapsed {format_duration(elapsed)}")
        eta = eta_seconds(step - self._step0, self.total - step, elapsed)
        if eta is not None:
            parts.append(f"eta {format_duration(eta)}")
        return "  ".join(parts)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not trainer.is_global_zero or not is_log_step(trainer, batch_idx, self.every):
            return
        metrics = interval_metrics(trainer, pl_module)
        print(self.line(trainer.global_step, metrics, time.perf_counter() - self._t0), flush=True)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking and "val/loss" in trainer.callback_metrics:
            m = trainer.callback_metrics
            print(
                f"step {trainer.global_step}/{self.total}  val/loss {float(m['val/loss']):.4f}  "
                f"val/bpb {float(m['val/bpb']):.4f}",
                flush=True,
            )


class StepProgressBar(RichProgressBar):
    """Lightning's rich bar, counting optimizer steps (`step k/N`) instead of epochs: training is steps-based
    (`max_epochs=-1`, which the stock bar shows as `Epoch 0/-2`)."""

    def _total_steps(self) -> int | float:
        return self.trainer.max_steps if self.trainer.max_steps > 0 else float("inf")

    @property
    def total_train_batches(self) -> int | float:
        """The bar's length: the run's optimizer steps."""
        return self._total_steps()

    def _get_train_description(self, current_epoch: int) -> str:
        total = self._total_steps()
        description = f"step {self.trainer.global_step}/{total if math.isfinite(total) else '?'}"
        return f"{description:{len(self.validation_description)}}"  # aligned with the validation bar's

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:  # resumed mid-epoch
            self._initialize_train_progress_bar_id()
        if self.progress is not None and self.train_progress_bar_id is not None:
            description = self._get_train_description(trainer.current_epoch)
            if self.theme.description:
                description = f"[{self.theme.description}]{description}"
            self.progress.update(self.train_progress_bar_id, completed=trainer.global_step, description=description)
        self._update_metrics(trainer, pl_module)
        self.refresh()


class ProgressFile(Callback):
    """`<run_dir>/progress.json`: step, total, latest losses; read by `llada sweep status` (rank 0, atomic)."""

    KEYS = ("train/loss", "val/loss", "val/bpb")

    def __init__(self, path: Path, every: int, total: int) -> None:
        self.path = path
        self.every = max(1, every)
        self.total = total

    def _write(self, trainer: L.Trainer, fresh: dict[str, float] | None = None) -> None:
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if k in self.KEYS}
        m.update({k: v for k, v in (fresh or {}).items() if k in self.KEYS})
        record: dict[str, Any] = {"step": trainer.global_step, "total": self.total, "time": time.time()}
        record.update({k: m[k] for k in self.KEYS if k in m})
        atomic_write_json(self.path, record)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.is_global_zero and is_log_step(trainer, batch_idx, self.every):
            self._write(trainer, interval_metrics(trainer, pl_module))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            self._write(trainer)


def progress_callback(enabled: bool, every: int, total: int) -> Callback | None:
    """The step-counting rich bar on a terminal, plain lines elsewhere, or nothing."""
    if not enabled:
        return None
    if sys.stdout.isatty():
        return StepProgressBar()
    return LineProgress(every, total)
