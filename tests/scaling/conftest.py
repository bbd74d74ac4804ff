"""Fixtures of the scaling tests (the synthetic laws live in scaling_synth.py)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
