"""Training throughput of `llada train` (Lightning) against a bare PyTorch loop: same model, batch, data.

Both paths train the same config from the same seed: the Lightning path through the exact machinery of
`llada train` (datamodule, module, trainer, checkpoint and progress callbacks, TensorBoard logging), the
bare path as a plain loop (next batch, objective, backward, clip, AdamW step, LR schedule). Segments of
each are measured alternately in one process; the table reports median step times and their ratio.

    python benchmarks/bench_train.py [--model cpu-3.5m] [--seq-len 128] [--batch-size 16] [--rounds 4] [--steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from llada_lightning.config.compose import compose
from llada_lightning.data.datamodule import LMDataModule
from llada_lightning.training.modules import build_module, step_seed
from llada_lightning.training.quiet import quiet_lightning
from llada_lightning.training.run import build_trainer


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        self.stamps.append(time.perf_counter())


def lightning_segment(overrides: list[str], steps: int, root: Path) -> list[float]:
    cfg = compose([*overrides, f"train.max_steps={steps}", f"run_dir={root / 'lightning'}"])
    L.seed_everything(cfg.train.seed, verbose=False)
    dm = LMDataModule(cfg.data, batch_size=cfg.train.batch_size, seed=cfg.train.seed, val_batches=1)
    module = build_module(cfg)
    trainer, _, _ = build_trainer(cfg, root / "lightning", steps)
    timer = StepTimer()
    trainer.callbacks.append(timer)  # type: ignore[attr-defined]
    trainer.fit(module, datamodule=dm)
    return [b - a for a, b in zip(timer.stamps[1:], timer.stamps[2:], strict=False)]  # skip the first (warm-up) step


def bare_segment(overrides: list[str], steps: int) -> list[float]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cpu-3.5m")
    parser.add_argument("--objective", default="llada")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    quiet_lightning()
    overrides = [
        f"model={args.model}",
        f"objective={args.objective}",
        f"data.seq_len={args.seq_len}",
        f"train.batch_size={args.batch_size}",
        "train.val_every_n_steps=0",
        "train.progress_bar=true",
    ]
    tokens = args.seq_len * args.batch_size
    light: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            light += lightning_segment(overrides, args.steps, Path(tmp) / f"round{r}")
            bare += bare_segment(overrides, args.steps)
    ml, mb = statistics.median(light), statistics.median(bare)
    print()
    print(
        f"machine: {torch.get_num_threads()} torch threads; model {args.model}, {args.objective}, "
        f"batch {args.batch_size} x {args.seq_len} tokens; {args.rounds} alternating rounds x {args.steps} steps"
    )
    print(f"{'path':<22} {'median step ms':>15} {'mean step ms':>13} {'tokens/s (median)':>18}")
    print(f"{'bare PyTorch loop':<22} {1e3 * mb:>15.2f} {1e3 * statistics.mean(bare):>13.2f} {tokens / mb:>18,.0f}")
    print(f"{'llada train':<22} {1e3 * ml:>15.2f} {1e3 * statistics.mean(light):>13.2f} {tokens / ml:>18,.0f}")
    print(f"throughput ratio llada train / bare (medians): {mb / ml:.3f}  (target >= 0.97)")


if __name__ == "__main__":
    main()
