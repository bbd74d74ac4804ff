"""Two tiny runs trained once per session by `llada train` on the embedded corpus: one LLaDA, one ARM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llada_lightning.cli import main
from llada_lightning.inference.loading import LoadedRun, load_run

TINY = ["model=cpu-0.1m", "data.seq_len=32", "train.batch_size=4", "train.max_steps=20", "train.progress_bar=false"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest (and steadiest on a shared 2-core machine) on one torch thread; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(root: Path, objective: str) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_dir = root / objective
        assert main(["train", *TINY, f"objective={objective}", f"run_dir={run_dir}"]) == 0
    finally:
        torch.set_num_threads(before)
    return run_dir


@pytest.fixture(scope="session")
def llada_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("inference-runs"), "llada")


@pytest.fixture(scope="session")
def arm_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("inference-runs"), "arm")


@pytest.fixture(scope="session")
def llada_run(llada_run_dir: Path) -> LoadedRun:
    return load_run(llada_run_dir)


@pytest.fixture(scope="session")
def arm_run(arm_run_dir: Path) -> LoadedRun:
    return load_run(arm_run_dir)
