"""Small sweep specs for the sweep tests, written under a test's tmp directory (one model, a few steps)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from llada_lightning.config.compose import to_yaml
from llada_lightning.io import atomic_write_json, atomic_write_text
from llada_lightning.sweep.spec import Run, expand, load_spec

BASE = [
    "model=cpu-0.1m",
    "data.seq_len=32",
    "train.batch_size=4",
    "train.max_steps=2",
    "train.val_every_n_steps=0",
    "train.val_batches=1",
    "train.progress_bar=false",
]


def write_spec(tmp_path: Path, grid: str = "  objective: [llada, arm]", name: str = "two") -> str:
    """A spec file `<tmp_path>/<name>.yaml` whose runs live in `<tmp_path>/<name>/`; returns its path."""
    path = tmp_path / f"{name}.yaml"
    base = "\n".join(f"  - {b}" for b in BASE)
    path.write_text(f"name: {name}\nroot: {tmp_path}\ncluster: local\nbase:\n{base}\ngrid:\n{grid}\n")
    return str(path)


def fake_queued(spec_path: str, overrides: list[str]) -> list[Run]:
    """Run directories as a local launch leaves them while its (here: this test's) worker is alive."""
    runs = expand(load_spec(spec_path, overrides), overrides)
    for run in runs:
        atomic_write_text(run.run_dir / "config.yaml", to_yaml(run.cfg))
        record = {"executor": "local", "job_id": "local-1", "name": run.name, "worker_pid": os.getpid()}
        atomic_write_json(run.run_dir / "job.json", {**record, "submitted": time.time()})
    return runs
