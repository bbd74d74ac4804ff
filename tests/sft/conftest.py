"""Tiny pre-trained parents (one LLaDA, one ARM) shared by the SFT tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from llada_lightning.config.compose import compose
from llada_lightning.training.run import train

BASE = ["model=cpu-0.4m", "data.seq_len=64", "train.batch_size=16", "train.progress_bar=false"]


@pytest.fixture(scope="session")
def parents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sft-parents")
    out = {}
    for objective in ("llada", "arm"):
        run_dir = root / objective
        train(compose([f"objective={objective}", *BASE, "train.max_steps=40", f"run_dir={run_dir}"]))
        out[objective] = run_dir
    return out
