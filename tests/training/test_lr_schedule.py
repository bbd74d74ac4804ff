"""LR multipliers: warmup, cosine to min_ratio, warmup-stable-decay."""

from __future__ import annotations

import math

import pytest

from llada_lightning.training.lr_schedule import lr_multiplier, warmup_steps


def test_warmup_steps_smdm_rule() -> None:
    assert warmup_steps(100_000, 0.01, 100) == 1000
    assert warmup_steps(2_000, 0.01, 100) == 100  # at least 100 steps
    assert warmup_steps(50, 0.01, 100) == 50  # never longer than the run


def test_cosine_endpoints_and_midpoint() -> None:
    kw = dict(total_steps=110, warmup=10, schedule="cosine", min_ratio=0.1)
    assert lr_multiplier(0, **kw) == pytest.approx(0.1)
    assert lr_multiplier(9, **kw) == pytest.approx(1.0)
    assert lr_multiplier(10, **kw) == pytest.approx(1.0)
    assert lr_multiplier(60, **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_multiplier(110, **kw) == pytest.approx(0.1)


def test_wsd_is_flat_then_linear() -> None:
    kw = dict(total_steps=100, warmup=0, schedule="wsd", min_ratio=0.0, decay_fraction=0.2)
    assert [lr_multiplier(s, **kw) for s in (0, 50, 79)] == [1.0, 1.0, 1.0]
    assert lr_multiplier(90, **kw) == pytest.approx(0.5)
    assert lr_multiplier(100, **kw) == pytest.approx(0.0)


def test_unknown_schedule() -> None:
    with pytest.raises(ValueError, match="train.lr_schedule"):
        lr_multiplier(0, total_steps=10, warmup=0, schedule="step", min_ratio=0.1)
