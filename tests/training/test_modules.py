"""The LightningModules differ only in the objective and the attention mask, however their config was built."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import pytest
import torch

from llada_lightning.config import ModelConfig, ObjectiveConfig, RunConfig
from llada_lightning.config.compose import compose
from llada_lightning.flops import flops_per_token
from llada_lightning.objectives.arm import ARMObjective
from llada_lightning.training.modules import ARMModule, LLaDAModule
from llada_lightning.training.run import train

MODEL = ModelConfig(n_layers=1, n_heads=2, n_kv_heads=2, d_model=16, d_ff=32, vocab_size=40, max_seq_len=16)


def run_config(objective: str) -> RunConfig:
    cfg = RunConfig(objective=ObjectiveConfig(name=objective), model=dataclasses.replace(MODEL))
    cfg.train.max_steps = 10
    return cfg


def sees_the_future(module) -> bool:
    x = torch.randint(0, MODEL.vocab_size, (1, 8), generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % MODEL.vocab_size
    with torch.no_grad():
        return not torch.allclose(module(x)[0, 0], module(y)[0, 0])


def test_arm_module_is_causal_even_from_a_hand_built_config() -> None:
    module = ARMModule(run_config("arm"))  # not through compose(): the objective alone decides the attention
    assert module.model.causal and module.objective.causal
    assert not sees_the_future(module)


def test_llada_module_is_bidirectional() -> None:
    module = LLaDAModule(run_config("llada"))
    assert not module.model.causal and sees_the_future(module)


class _Strategy:
    def __init__(self, others_bad: bool) -> None:
        self.others_bad = others_bad

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:  # noqa: A002 - Lightning's name
        assert all is False  # "any rank", not "every rank"
        return decision or self.others_bad


class _Trainer:
    def __init__(self, world_size: int, others_bad: bool) -> None:
        self.world_size, self.strategy = world_size, _Strategy(others_bad)


@pytest.mark.parametrize(("world_size", "mine", "others_bad", "stop"), [
    (1, 1.0, True, False),  # one process: only its own loss counts
    (1, float("nan"), False, True),
    (2, 1.0, True, True),  # another rank diverged: this one stops too instead of hanging in the next all-reduce
    (2, float("inf"), False, True),
    (2, 1.0, False, False),
])  # fmt: skip
def test_loss_guard_stops_every_rank_together(world_size, mine, others_bad, stop) -> None:
    module = ARMModule(run_config("arm"))
    module._trainer = _Trainer(world_size, others_bad)
    assert module._any_rank_non_finite(torch.tensor(mine)) is stop


# -- what a run logs: one step convention (steps completed) and the interval's mean loss -----------------
LOGGED = [
    "objective=arm",
    "model=cpu-0.1m",
    "data.seq_len=32",
    "train.batch_size=4",
    "train.max_steps=4",
    "train.accumulate_grad_batches=2",
    "train.log_every_n_steps=2",
    "train.val_every_n_steps=2",
    "train.val_batches=1",
    "train.progress_bar=true",  # stdout is not a terminal: plain lines
    "train.peak_flops=1e9",  # MFU is logged against it (no GPU here)
]


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """A 4-step run (2 micro-batches a step, a log every 2 steps): its dir, every micro-batch loss, its stdout."""
    run_dir, losses, screen = tmp_path_factory.mktemp("logged"), [], io.StringIO()
    original = ARMObjective.training_loss

    def training_loss(self, model, x0, generator=None):  # type: ignore[no-untyped-def]
        out = original(self, model, x0, generator)
        losses.append(float(out["loss"].detach()))
        return out

    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(screen):
        patch.setattr(ARMObjective, "training_loss", training_loss)
        train(compose([*LOGGED, f"run_dir={run_dir}"]))
    return run_dir, losses, screen.getvalue()


def _scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """{tag: {TensorBoard step: value}} of a run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_tensorboard_console_and_progress_file_count_steps_completed(logged_run) -> None:
    run_dir, _, out = logged_run
    tb = _scalars(run_dir)
    for tag in ("train/loss", "lr", "progress/tokens", "perf/tokens_per_s", "val/loss", "val/bpb"):
        assert sorted(tb[tag]) == [2, 4], tag  # after 2 and 4 optimizer steps, not 1 and 3 (0-based)
    assert tb["progress/step"] == {2: 2.0, 4: 4.0}
    assert all(v > 0 for v in tb["perf/tokens_per_s"].values())  # known from the first log on
    for step in (2, 4):
        assert f"step {step}/4  loss {tb['train/loss'][step]:.4f}  " in out, out
        assert f"step {step}/4  val/loss {tb['val/loss'][step]:.4f}  " in out, out
    record = json.loads((run_dir / "progress.json").read_text())
    assert record["step"] == 4
    assert record["train/loss"] == pytest.approx(tb["train/loss"][4], rel=1e-6)
    assert record["val/loss"] == pytest.approx(tb["val/loss"][4], rel=1e-6)


def test_mfu_is_the_full_convention_flops_per_second_over_the_peak(logged_run) -> None:
    run_dir, _, out = logged_run
    tb = _scalars(run_dir)
    per_token = flops_per_token(compose(LOGGED).model, 32, "full")  # an ARM: every token at full length
    assert sorted(tb["perf/mfu"]) == [2, 4]
    for step, value in tb["perf/mfu"].items():
        assert value == pytest.approx(tb["perf/tokens_per_s"][step] * per_token / 1e9, rel=1e-4)
        assert f"MFU {100 * value:.1f}%" in out


def test_logged_train_loss_is_the_mean_over_the_log_interval(logged_run) -> None:
    run_dir, losses, _ = logged_run
    assert len(losses) == 4 * 2
    logged = _scalars(run_dir)["train/loss"]
    for step, interval in ((2, losses[:4]), (4, losses[4:])):  # every micro-batch of the 2 steps before the log
        assert logged[step] == pytest.approx(sum(interval) / len(interval), rel=1e-6), step
        assert logged[step] != pytest.approx(interval[-1], rel=1e-6)  # not the last batch's loss
