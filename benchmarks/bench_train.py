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
same thread count (a 1024^3 GEMM, median of repeats). The measuring code is llada_lightning/bench/train.py
(shared with `llada bench`).

    python benchmarks/bench_train.py [--case study-smallest,study-largest,cpu-3.5m] [--rounds 4] [--steps 60]
"""

from __future__ import annotations

import argparse
import platform
from typing import Any

import torch

from llada_lightning.bench.train import compare_training
from llada_lightning.training.quiet import quiet_lightning

CASES = ("study-smallest", "study-largest", "cpu-3.5m")
TARGETS = {"study-smallest": 0.9, "study-largest": 0.9, "cpu-3.5m": 0.97}  # issue 11


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
    return {"case": case, **compare_training(overrides, threads, rounds, steps)}


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
