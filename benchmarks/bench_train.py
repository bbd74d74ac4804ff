"""Training throughput of `llada train` (Lightning) against a bare PyTorch loop: same model, batch, data.

Both paths train the same config from the same seed: the Lightning path through the exact machinery of
`llada train` (datamodule, module, trainer, checkpoint and progress callbacks, TensorBoard logging), the
bare path as a plain loop (next batch, objective, backward, clip, AdamW step, LR schedule). Segments of
each are measured alternately in one process; the table reports median step times and their ratio.

Three cases by default:
  study-smallest, study-largest  the smallest and largest model of the `isoflop` study design with the study's own
                                 settings (its base overrides: logging, checkpoint and validation intervals; one
                                 torch thread, as `llada study --threads 1` runs them)
  cpu-3.5m                       the `cpu-3.5m` model, 16 x 128 tokens, the default torch threads

MFU is the model's training FLOPs per step (the `full` convention: every matmul including the head and
attention, flops.py) over the step time, as a fraction of this machine's measured fp32 matmul rate at the
same thread count (a 1024^3 GEMM, median of repeats).

    python benchmarks/bench_train.py [--case study-smallest,study-largest,cpu-3.5m] [--rounds 4] [--steps 60]
"""

from __future__ import annotations

import argparse
import platform
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
from llada_lightning.training.quiet import quiet_lightning
from llada_lightning.training.run import build_trainer

CASES = ("study-smallest", "study-largest", "cpu-3.5m")
TARGETS = {"study-smallest": 0.9, "study-largest": 0.9, "cpu-3.5m": 0.97}  # issue 11


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


def case_overrides(case: str, objective: str) -> tuple[list[str], int]:
    """The run overrides of one case and its torch threads."""
    if case in ("study-smallest", "study-largest"):
        from llada_lightning.study.design import load_design

        design = load_design("isoflop")
        width = design.widths[0] if case == "study-smallest" else design.widths[-1]  # type: ignore[attr-defined]
        keys = design.model_keys(width)  # type: ignore[attr-defined]
        runs = [o for o in design.run_overrides() if not o.startswith(("train.max_steps", "train.flops"))]  # type: ignore[attr-defined]
        return [*runs, *(f"{k}={v}" for k, v in keys.items()), f"objective={objective}"], 1
    if case == "cpu-3.5m":
        overrides = [
            "model=cpu-3.5m",
            f"objective={objective}",
            "data.seq_len=128",
            "train.batch_size=16",
            "train.val_every_n_steps=0",
            "train.progress_bar=true",
        ]
        return overrides, torch.get_num_threads()
    raise SystemExit(f"--case {case!r}: choose from {', '.join(CASES)}")


def run_case(case: str, objective: str, rounds: int, steps: int) -> dict[str, Any]:
    overrides, threads = case_overrides(case, objective)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    light: list[float] = []
    bare: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(rounds):  # alternate, so drifts of a shared machine hit both paths alike
                light += lightning_segment(overrides, steps, Path(tmp) / f"round{r}")
                bare += bare_segment(overrides, steps)
    finally:
        torch.set_num_threads(previous)
    cfg = compose(overrides)
    step_flops = flops_per_token(cfg.model, cfg.data.seq_len, "full") * tokens_per_step(cfg)
    peak = matmul_rate(threads)
    ml, mb = statistics.median(light), statistics.median(bare)
    m = cfg.model
    return {
        "case": case,
        "shape": f"d{m.d_model} L{m.n_layers} V{m.vocab_size} {cfg.train.batch_size}x{cfg.data.seq_len}",
        "threads": threads,
        "bare_ms": 1e3 * mb,
        "light_ms": 1e3 * ml,
        "ratio": mb / ml,
        "mfu_bare": step_flops / mb / peak,
        "mfu_light": step_flops / ml / peak,
        "peak": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--objective", default="llada")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    quiet_lightning()
    rows = [run_case(c.strip(), args.objective, args.rounds, args.steps) for c in args.case.split(",") if c.strip()]
    print()
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads by default, "
        f"torch {torch.__version__}; "
        f"{args.objective}; {args.rounds} alternating rounds x {args.steps} steps per path and case"
    )
    head = f"{'case':<16} {'shape':<24} {'thr':>3} {'bare ms':>8} {'train ms':>9} {'ratio':>6} {'target':>6}"
    print(head + f" {'MFU bare':>9} {'MFU train':>9} {'matmul GFLOP/s':>15}")
    for r in rows:
        print(
            f"{r['case']:<16} {r['shape']:<24} {r['threads']:>3} {r['bare_ms']:>8.2f} {r['light_ms']:>9.2f} "
            f"{r['ratio']:>6.3f} {TARGETS[r['case']]:>6.2f} {100 * r['mfu_bare']:>8.1f}% {100 * r['mfu_light']:>8.1f}% "
            f"{r['peak'] / 1e9:>15.1f}"
        )
    print("ratio = bare / llada train median step time (1.0: the framework adds nothing)")


if __name__ == "__main__":
    main()
