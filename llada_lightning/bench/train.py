"""Training throughput of `llada train` (Lightning) against a bare PyTorch loop: same model, batch, data, seed.

The Lightning path is the exact machinery of `llada train` (datamodule, module, trainer, checkpoint and progress
callbacks, TensorBoard logging); the bare path a plain loop (next batch, objective, backward, clip, AdamW step, LR
schedule). Segments of each alternate in one process, so drifts of a shared machine hit both alike. MFU is the
model's training FLOPs per step (the `full` convention of flops.py) over the step time, as a fraction of this
machine's fp32 matmul rate measured in the same run at the same thread count (`matmul_rate`).
Used by benchmarks/bench_train.py and `llada bench`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from llada_lightning.config.compose import compose
from llada_lightning.data.datamodule import LMDataModule
from llada_lightning.flops import flops_per_token, tokens_per_step
from llada_lightning.training.modules import build_module, step_seed
from llada_lightning.training.run import build_trainer


class StepTimer(L.Callback):
    """Time stamps: when fit starts, and at the end of each training batch."""

    def __init__(self) -> None:
        self.start = 0.0
        self.stamps: list[float] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        self.stamps.append(time.perf_counter())


def lightning_timer(overrides: list[str], steps: int, root: Path) -> StepTimer:
    """Train `steps` steps through `llada train`'s trainer in `root`; the step timer."""
    cfg = compose([*overrides, f"train.max_steps={steps}", f"run_dir={root / 'lightning'}"])
    L.seed_everything(cfg.train.seed, verbose=False)
    dm = LMDataModule(cfg.data, batch_size=cfg.train.batch_size, seed=cfg.train.seed, val_batches=1)
    module = build_module(cfg)
    trainer, _, _ = build_trainer(cfg, root / "lightning", steps)
    timer = StepTimer()
    trainer.callbacks.append(timer)  # type: ignore[attr-defined]
    trainer.fit(module, datamodule=dm)
    return timer


def lightning_segment(overrides: list[str], steps: int, root: Path) -> list[float]:
    """Step times of `llada train`, the first (warm-up) step left out."""
    stamps = lightning_timer(overrides, steps, root).stamps
    return [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]


def bare_segment(overrides: list[str], steps: int) -> list[float]:
    """Step times of a bare loop over the same model, objective, optimizer, schedule and data (first step left out)."""
    cfg = compose([*overrides, f"train.max_steps={steps}"])
    L.seed_everything(cfg.train.seed, verbose=False)
    dm = LMDataModule(cfg.data, batch_size=cfg.train.batch_size, seed=cfg.train.seed, val_batches=1)
    dm.prepare_data()
    dm.setup("fit")
    module = build_module(cfg)  # only for the identical model, objective, optimizer and schedule
    model, objective = module.model, module.objective
    opt_cfg = module.configure_optimizers()
    optimizer, scheduler = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    loader = iter(dm.train_dataloader())
    stamps = []
    model.train()
    for step in range(steps):
        batch = next(loader)
        gen = torch.Generator().manual_seed(step_seed(cfg.train.seed, step, 0, 0))
        loss = objective.training_loss(model, batch, gen)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    return [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]


def matmul_rate(threads: int, n: int = 1024, repeats: int = 7) -> float:
    """Measured fp32 FLOP/s of an n^3 GEMM with `threads` torch threads (median of `repeats`)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        return 2 * n**3 / statistics.median(times)
    finally:
        torch.set_num_threads(previous)


def compare_training(overrides: list[str], threads: int, rounds: int, steps: int) -> dict[str, Any]:
    """Median step times of `llada train` and the bare loop (alternating `rounds` segments of `steps` steps each),
    their tokens/s and MFU against the matmul rate measured here."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    light: list[float] = []
    bare: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(rounds):
                light += lightning_segment(overrides, steps, Path(tmp) / f"round{r}")
                bare += bare_segment(overrides, steps)
    finally:
        torch.set_num_threads(previous)
    cfg = compose(overrides)
    tokens = tokens_per_step(cfg)
    step_flops = flops_per_token(cfg.model, cfg.data.seq_len, "full") * tokens
    peak = matmul_rate(threads)
    ml, mb = statistics.median(light), statistics.median(bare)
    m = cfg.model
    return {
        "shape": f"d{m.d_model} L{m.n_layers} V{m.vocab_size} {cfg.train.batch_size}x{cfg.data.seq_len}",
        "threads": threads,
        "bare_ms": 1e3 * mb,
        "light_ms": 1e3 * ml,
        "ratio": mb / ml,
        "bare_tokens_per_s": tokens / mb,
        "light_tokens_per_s": tokens / ml,
        "mfu_bare": step_flops / mb / peak,
        "mfu_light": step_flops / ml / peak,
        "peak": peak,
    }
