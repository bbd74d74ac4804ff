"""Golden loss curves: the first steps of a tiny fixed `train()` run per objective, checked in beside this file.

Each curve is what a real run writes to TensorBoard at every step: `train/loss` (the objective's loss of the
batch at step s, before its update) and `lr` (logged after step s's update, so the rate step s + 1 uses). It
covers the whole recipe: model init, objective (mask draws and 1/p weights, or next-token CE), data order,
AdamW, warmup + cosine schedule, gradient clipping. When a change moves a curve on purpose, regenerate the
files and review the diff:

    .venv/bin/python tests/training/test_golden.py --regenerate

Tolerance (RTOL below), measured on the machine this suite runs on (torch 2.13 CPU build with MKL, AVX512 host):
the largest relative deviation from the golden files over every step of loss and lr, both objectives, was
- 0 (bit-identical) for repeated runs, for 1, 2, 4 and 8 torch threads, with MKL_ENABLE_INSTRUCTIONS=AVX2 or
  SSE4_2, and with oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA);
- 1.1e-7 (llada) and up to 6e-8 (arm) with ATEN_CPU_CAPABILITY=avx2 or default (the vectorised kernels of older
  CPUs) or MKL_CBWR=COMPATIBLE, alone, combined, on 1 or 2 threads: 1 float32 ulp, after 10 updates.
`--measure [threads]` reprints that figure for the current environment. RTOL = 1e-5 is ~90x the worst of those
and still below small real changes: the peak LR 3e-3 -> 3.003e-3 (0.1%) moves the curves by up to 8e-5, Adam's
eps 1e-8 -> 1e-7 by 6e-5, beta2 0.95 -> 0.951 by 3e-5, LLaDA's mask floor eps 1e-3 -> 1.1e-3 by 5e-3; changes
of the data order, the init or a loss formula move step 0 itself by far more.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from llada_lightning.config.compose import compose
from llada_lightning.training.run import train

GOLDEN = Path(__file__).parent / "golden"
OBJECTIVES = ("llada", "arm")
OVERRIDES = [
    "model=cpu-0.1m",
    "data=embedded",
    "train=cpu",
    "data.seq_len=32",
    "train.batch_size=4",
    "train.max_steps=10",
    "train.warmup_min_steps=3",  # train=cpu's 5% warmup rounds to 0 steps here; 3 puts the warmup in the curve
    "train.seed=0",
    "train.log_every_n_steps=1",
    "train.val_batches=1",
    "train.progress_bar=false",
]
REGENERATE = ".venv/bin/python tests/training/test_golden.py --regenerate"
RTOL = 1e-5


def run_curve(objective: str, run_dir: Path, threads: int = 1, overrides: Sequence[str] = ()) -> dict[str, list[float]]:
    """Train the fixed tiny run (plus `overrides` that must not move it) on `threads` torch threads; its per-step
    `train/loss` and `lr` from TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = train(compose([f"objective={objective}", *OVERRIDES, *overrides, f"run_dir={run_dir}"]))
    finally:
        torch.set_num_threads(before)
    assert result["status"] == "done", result
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    curve = {}
    for tag, key in (("train/loss", "loss"), ("lr", "lr")):
        scalars = events.Scalars(tag)
        # one value per step, at the number of steps completed (1-based, as the console shows it)
        assert [s.step for s in scalars] == list(range(1, len(scalars) + 1)), f"{tag}: one value per step expected"
        curve[key] = [float(s.value) for s in scalars]
    return curve


def load_golden(objective: str) -> dict:
    return json.loads((GOLDEN / f"{objective}.json").read_text())


def worst_deviation(curve: dict[str, list[float]], golden: dict) -> float:
    """Largest relative difference over every step of loss and lr."""
    pairs = [(a, b) for key in ("loss", "lr") for a, b in zip(curve[key], golden[key], strict=True)]
    return max(abs(a - b) / abs(b) for a, b in pairs)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_first_steps_match_the_golden_loss_curve(objective: str, tmp_path: Path) -> None:
    golden = load_golden(objective)
    assert golden["overrides"] == OVERRIDES, f"the golden run's config changed: regenerate with `{REGENERATE}`"
    curve = run_curve(objective, tmp_path / objective)
    steps = golden["steps"]
    assert len(curve["loss"]) == len(curve["lr"]) == steps == 10
    table = "\n".join(
        f"  step {s}: loss {a:.7f} (golden {b:.7f}), lr {c:.7g} (golden {d:.7g})"
        for s, (a, b, c, d) in enumerate(zip(curve["loss"], golden["loss"], curve["lr"], golden["lr"], strict=True))
    )
    message = f"{objective} curve moved (rtol {RTOL}); if intended, regenerate with `{REGENERATE}`:\n{table}"
    assert curve["loss"] == pytest.approx(golden["loss"], rel=RTOL), message
    assert curve["lr"] == pytest.approx(golden["lr"], rel=RTOL), message


def test_golden_curves_are_plausible() -> None:
    """Independent of how the files were made: an untrained ARM scores about a uniform guess (ln V nats), a few
    steps lower both losses, and the logged LR follows the configured warmup and decay."""
    cfg = compose(OVERRIDES)
    arm, llada = load_golden("arm"), load_golden("llada")
    assert arm["loss"][0] == pytest.approx(math.log(cfg.model.vocab_size), abs=0.05)
    assert arm["loss"][-1] < arm["loss"][0] - 0.3
    assert min(llada["loss"][5:]) < llada["loss"][0] - 1.0  # the ELBO estimate of one small batch is noisy
    for curve in (arm, llada):  # warmup up to the peak LR, then a monotone decay to lr * min_lr_ratio
        lr, peak = curve["lr"], curve["lr"].index(max(curve["lr"]))
        assert lr[peak] == pytest.approx(cfg.train.lr, rel=1e-6) and 0 < peak < len(lr) - 1
        assert all(a < b for a, b in zip(lr[:peak], lr[1 : peak + 1], strict=True))
        assert all(a >= b for a, b in zip(lr[peak:], lr[peak + 1 :], strict=False))
        assert lr[-1] == pytest.approx(cfg.train.lr * cfg.train.min_lr_ratio, rel=1e-6)


def _main(argv: list[str]) -> int:
    """`--regenerate`: rewrite golden/*.json; `--measure [threads]`: print each curve's deviation from them."""
    os.environ.setdefault("LLADA_CACHE", tempfile.mkdtemp(prefix="llada-golden-cache-"))  # as tests/conftest.py
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not argv or argv[0] not in ("--regenerate", "--measure"):
        print(f"usage: {REGENERATE} | --measure [threads]", file=sys.stderr)
        return 2
    threads = int(argv[1]) if len(argv) > 1 else 1
    for objective in OBJECTIVES:
        with tempfile.TemporaryDirectory() as tmp:
            curve = run_curve(objective, Path(tmp) / objective, threads)
        if argv[0] == "--measure":
            deviation = worst_deviation(curve, load_golden(objective))
            print(f"{objective}: threads {threads}: max relative deviation {deviation:.3g}")
            continue
        GOLDEN.mkdir(exist_ok=True)
        record = {
            "regenerate": REGENERATE,
            "objective": objective,
            "overrides": OVERRIDES,
            "torch": torch.__version__,
            "steps": len(curve["loss"]),
            **curve,
        }
        (GOLDEN / f"{objective}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {GOLDEN / f'{objective}.json'}: loss {curve['loss'][0]:.4f} -> {curve['loss'][-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
