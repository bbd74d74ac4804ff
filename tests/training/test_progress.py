"""What a user sees while a run trains: plain lines with elapsed time and ETA, a rich bar counting steps."""

from __future__ import annotations

import io
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import rich
from lightning.pytorch.demos.boring_classes import BoringModel

from llada_lightning.config.compose import compose
from llada_lightning.training import progress
from llada_lightning.training.progress import (
    LineProgress,
    StepProgressBar,
    format_count,
    format_duration,
    format_flops,
    progress_callback,
)
from llada_lightning.training.run import train


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (42.4, "42s"), (190, "3m10s"), (3599.6, "1h00m"), (3720, "1h02m"), (93_600, "1d02h")],
)
def test_durations_read_like_3m10s_and_1h02m(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_counts_and_flops_read_at_a_glance() -> None:
    assert [format_count(x) for x in (812, 8192, 1_234_567, 999_960, 3.3e9)] == ["812", "8.19K", "1.23M", "1M", "3.3B"]
    assert format_flops(1.2e13) == "1.2e13" and format_flops(8.14e8) == "8.1e8"


def test_line_has_elapsed_and_eta_from_the_rate_of_this_segment() -> None:
    line = LineProgress(every=10, total=100)
    line._step0 = 20  # resumed at step 20: 20 steps in 60 s, so the 60 left take 3 minutes
    metrics = {"train/loss": 1.5, "perf/tokens_per_s": 1234.4}
    assert line.line(40, metrics, 60.0) == "step 40/100  loss 1.5000  1,234 tok/s  elapsed 1m00s  eta 3m00s"


def test_line_shows_mfu_when_a_peak_is_known() -> None:
    metrics = {"train/loss": 1.5, "perf/tokens_per_s": 1000.0, "perf/mfu": 0.41234}
    assert "1,000 tok/s  MFU 41.2%  elapsed" in LineProgress(every=1, total=4).line(2, metrics, 2.0)


@pytest.mark.parametrize("metrics", [{"train/loss": 2.0}, {"train/loss": 2.0, "perf/tokens_per_s": math.nan}])
def test_line_leaves_out_a_tokens_per_s_not_known_yet(metrics: dict[str, float]) -> None:
    shown = LineProgress(every=1, total=4).line(1, metrics, 2.0)
    assert "nan" not in shown and "tok/s" not in shown
    assert shown == "step 1/4  loss 2.0000  elapsed 2s  eta 6s"


def test_plain_log_shows_tokens_per_s_from_its_first_line_and_never_nan(tmp_path: Path, capsys) -> None:
    overrides = ["objective=arm", "model=cpu-0.1m", "data.seq_len=32", "train.batch_size=4", "train.max_steps=4"]
    flags = ["train.log_every_n_steps=2", "train.val_batches=1", "train.progress_bar=true", f"run_dir={tmp_path}"]
    train(compose([*overrides, *flags]))  # stdout is captured, not a terminal: plain lines
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("step ") and " loss " in line]
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"]
    for line in lines:
        assert "tok/s" in line and "elapsed " in line and "eta " in line, line
    assert "nan" not in out and "MFU" not in out  # no GPU and no train.peak_flops: no MFU


@pytest.fixture
def rich_console():
    yield
    rich.reconfigure()  # the bar reconfigures rich's global console; give the next test a fresh one


def test_rich_bar_counts_optimizer_steps_never_a_negative_epoch(rich_console) -> None:
    screen = io.StringIO()
    bar = StepProgressBar(console_kwargs={"file": screen, "force_terminal": True, "width": 120, "color_system": None})
    trainer = L.Trainer(
        max_steps=3,
        max_epochs=-1,  # as `llada train`: steps-based, which the stock bar shows as "Epoch 0/-2"
        accumulate_grad_batches=2,
        limit_val_batches=0,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(BoringModel())
    shown = screen.getvalue()
    assert "Epoch" not in shown and "-2" not in shown
    assert "step 3/3" in shown and " 3/3 " in shown  # the bar ends full, at steps (not micro-batches: 6)


def test_a_terminal_gets_the_step_bar(monkeypatch) -> None:
    monkeypatch.setattr(progress, "sys", SimpleNamespace(stdout=SimpleNamespace(isatty=lambda: True)))
    assert isinstance(progress_callback(True, 10, 100), StepProgressBar)
    assert progress_callback(False, 10, 100) is None
