"""LLaDA's random-length micro-batches are counted at the length they trained on: tokens and both FLOP conventions.

The expected counts are built here from the lengths the objective actually returned during training (recorded
by wrapping `LLaDAObjective.training_loss`) and from the FLOP formulas written out by hand:
per token forward 2 N (6N convention) or 2 n_layers (4 d^2 + 3 d d_ff) + 2 d V + 4 n_layers L d ("full", with L
the length of the token's own sequence); training = 3 x forward.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from llada_lightning.config import ModelConfig
from llada_lightning.config.compose import compose
from llada_lightning.flops import total_steps
from llada_lightning.objectives.llada import LLaDAObjective
from llada_lightning.training.modules import TrainedTokens, build_module
from llada_lightning.training.run import train

SEQ_LEN = 32
BASE = [
    "objective=llada",
    "model=cpu-0.1m",
    f"data.seq_len={SEQ_LEN}",
    "train.batch_size=4",
    "train.val_batches=1",
    "train.progress_bar=false",
    "objective.random_length_prob=0.5",
]


def flops_6n(model: ModelConfig, lengths: list[tuple[int, int]]) -> int:
    n = model.n_layers * (16 * model.d_model**2 + 2 * model.d_model) + model.d_model  # SMDM's count, d_ff = 4d
    assert model.d_ff == 4 * model.d_model
    return sum(6 * n * rows * length for rows, length in lengths)


def flops_full(model: ModelConfig, lengths: list[tuple[int, int]]) -> int:
    d, layers = model.d_model, model.n_layers
    total = 0
    for rows, length in lengths:
        forward = 2 * layers * (4 * d * d + 3 * d * model.d_ff) + 2 * d * model.vocab_size + 4 * layers * length * d
        total += 3 * forward * rows * length
    return total


class Recorded(list):
    """(rows, length) of every micro-batch `LLaDAObjective.training_loss` trains on, in order, and the device."""

    device = torch.device("cpu")


@pytest.fixture
def recorded(monkeypatch) -> Recorded:
    used = Recorded()
    original = LLaDAObjective.training_loss

    def training_loss(self, model, x0, generator):  # type: ignore[no-untyped-def]
        out = original(self, model, x0, generator)
        used.append((int(x0.shape[0]), int(out["seq_len"])))
        used.device = x0.device
        return out

    monkeypatch.setattr(LLaDAObjective, "training_loss", training_loss)
    return used


def _logged(run_dir: Path, tag: str) -> dict[int, float]:
    """{optimizer step (the logged `progress/step`): value of `tag` logged with it} from TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[int, float] = {}
    for events in (run_dir / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            step_of = {e.step: int(e.value) for e in acc.Scalars("progress/step")}
            values.update({step_of[e.step]: e.value for e in acc.Scalars(tag)})
    return values


def test_counted_tokens_and_flops_are_the_lengths_trained(recorded: Recorded, tmp_path: Path) -> None:
    acc, steps = 2, 6
    cfg = compose(
        [*BASE, "train.max_steps=6", f"train.accumulate_grad_batches={acc}", "train.log_every_n_steps=2"]
        + [f"run_dir={tmp_path}"]
    )
    result = train(cfg)
    assert len(recorded) == steps * acc
    assert any(length < SEQ_LEN for _, length in recorded), "no short micro-batch: the test would prove nothing"
    assert all(1 <= length <= SEQ_LEN for _, length in recorded)
    tokens = sum(rows * length for rows, length in recorded)
    assert tokens < steps * cfg.train.batch_size * acc * SEQ_LEN
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["tokens"] == result["tokens"] == tokens
    assert on_disk["flops_6N"] == float(flops_6n(cfg.model, recorded))
    assert on_disk["flops_full"] == float(flops_full(cfg.model, recorded))
    # the logged progress after 2, 4 and 6 steps: the micro-batches of those steps only
    logged_tokens, logged_full = _logged(tmp_path, "progress/tokens"), _logged(tmp_path, "progress/flops_full")
    for step in (2, 4, 6):
        upto = recorded[: step * acc]
        assert logged_tokens[step] == sum(rows * length for rows, length in upto), step  # exact in float32
        assert logged_full[step] == pytest.approx(flops_full(cfg.model, upto), rel=1e-6), step
    # the checkpoint holds the count; recounting from the seeds alone (old checkpoints) gives the same one
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    context = sum(rows * length * length for rows, length in recorded)
    assert ckpt["llada_trained"] == {"steps": steps, "tokens": tokens, "token_context": context}
    # (on the training device: a CUDA generator draws other numbers than a CPU one)
    assert build_module(cfg).to(recorded.device).count_trained(steps) == TrainedTokens(steps, tokens, context)


def test_full_length_runs_count_exactly_as_before(recorded: Recorded, tmp_path: Path) -> None:
    cfg = compose([*BASE, "objective.random_length_prob=0", "train.max_steps=3", f"run_dir={tmp_path}"])
    result = train(cfg)
    assert all(length == SEQ_LEN for _, length in recorded)
    tokens = 3 * cfg.train.batch_size * SEQ_LEN
    assert result["tokens"] == tokens
    assert result["flops_full"] == tokens * (flops_full(cfg.model, [(1, SEQ_LEN)]) / SEQ_LEN)


def test_a_flops_budget_keeps_its_steps_and_counts_what_it_spent() -> None:
    """Chosen: a budget fixes the step count as without random lengths (the schedule is known before training);
    the counted compute then falls short of the budget by the expected p (T - 1) / (2 T) (6N convention)."""
    budget = ["train.max_steps=null", "train.flops_budget=3e11", "train.flops_convention=6N"]
    with_random = compose([*BASE, *budget, "data.seq_len=64"])
    without = compose([*BASE, *budget, "data.seq_len=64", "objective.random_length_prob=0"])
    steps = total_steps(with_random)
    assert steps == total_steps(without) > 50
    counted = build_module(with_random).progress_metrics(steps)["progress/flops_6N"]
    full_length = build_module(without).progress_metrics(steps)["progress/flops_6N"]
    assert full_length <= 3e11
    shortfall = 1 - counted / full_length
    p = 0.5
    expected = p * (64 - 1) / (2 * 64)  # p (T - 1) / (2 T): a drawn length averages (T + 1) / 2
    # one draw per step; a draw loses (T - L) / T, uniform-like on [0, 1) with probability p: sd sqrt(p/3 - p^2/4)
    standard_error = (p / 3 - p * p / 4) ** 0.5 / steps**0.5
    assert abs(shortfall - expected) < 5 * standard_error
    assert shortfall > 0.1  # far from no shortfall at all (expected 0.246)


WRAPPER = textwrap.dedent(
    """
    import os, sys
    from llada_lightning.objectives.llada import LLaDAObjective

    original = LLaDAObjective.training_loss

    def training_loss(self, model, x0, generator):
        out = original(self, model, x0, generator)
        rank = os.environ.get("LOCAL_RANK", "0")
        with open(os.path.join(os.environ["LENGTH_LOG"], f"rank{rank}.txt"), "a") as f:
            f.write(f"{x0.shape[0]} {out['seq_len']}\\n")
        return out

    LLaDAObjective.training_loss = training_loss
    from llada_lightning.cli import main

    sys.exit(main())
    """
)


def test_two_ddp_ranks_each_count_every_ranks_lengths(tmp_path: Path) -> None:
    """Each rank draws its own lengths; result.json counts both ranks' micro-batches as they were trained."""
    wrapper, logs, run_dir = tmp_path / "wrapper.py", tmp_path / "lengths", tmp_path / "run"
    wrapper.write_text(WRAPPER)
    logs.mkdir()
    args = [*BASE, "train.max_steps=4", "train.accumulate_grad_batches=2", "train.devices=2"]
    args += ["train.accelerator=cpu", "train.strategy=ddp", f"run_dir={run_dir}"]
    env = {**os.environ, "LENGTH_LOG": str(logs), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(wrapper), "train", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    per_rank = {
        path.name: [tuple(int(v) for v in line.split()) for line in path.read_text().splitlines()]
        for path in sorted(logs.glob("rank*.txt"))
    }
    assert sorted(per_rank) == ["rank0.txt", "rank1.txt"] and all(len(v) == 8 for v in per_rank.values())
    assert per_rank["rank0.txt"] != per_rank["rank1.txt"]  # the ranks drew different lengths
    everything = [pair for pairs in per_rank.values() for pair in pairs]
    assert any(length < SEQ_LEN for _, length in everything)
    result = json.loads((run_dir / "result.json").read_text())
    cfg = compose(args)
    assert result["world_size"] == 2
    assert result["tokens"] == sum(rows * length for rows, length in everything)
    assert result["flops_6N"] == float(flops_6n(cfg.model, everything))  # type: ignore[arg-type]
    assert result["flops_full"] == float(flops_full(cfg.model, everything))  # type: ignore[arg-type]
