"""Suite-wide: an isolated tokenised-data cache (never the user's), offline hub libraries, and two tiny runs
trained once per session by `llada train` on the embedded corpus (one LLaDA, one ARM) for inference and export."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from llada_lightning.inference.loading import LoadedRun

os.environ.setdefault("LLADA_CACHE", tempfile.mkdtemp(prefix="llada-test-cache-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = ["slurm_cluster_fixture"]  # the `slurm_cluster` fixture, shared by tests/slurm and tests/sweep

TINY_RUN = ["model=cpu-0.1m", "data.seq_len=32", "train.batch_size=4", "train.max_steps=20", "train.progress_bar=false"]


def _train(root: Path, objective: str) -> Path:
    import torch

    from llada_lightning.cli import main

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_dir = root / objective
        assert main(["train", *TINY_RUN, f"objective={objective}", f"run_dir={run_dir}"]) == 0
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
    from llada_lightning.inference.loading import load_run

    return load_run(llada_run_dir)


@pytest.fixture(scope="session")
def arm_run(arm_run_dir: Path) -> LoadedRun:
    from llada_lightning.inference.loading import load_run

    return load_run(arm_run_dir)
