"""Run states from the run directory: a cancelled run shows as cancelled, not failed, once its process is gone."""

from __future__ import annotations

import json
import os
from pathlib import Path

from llada_lightning.sweep.state import run_status


def _job(run_dir: Path, **record: object) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "job.json").write_text(json.dumps(record))
    return run_dir


def test_cancelled_local_run_is_cancelled_and_running_until_its_process_exits(tmp_path: Path) -> None:
    queued = _job(tmp_path / "a", executor="local", job_id="local-1", cancelled=1.0)
    assert run_status(queued).state == "cancelled"
    alive = _job(tmp_path / "b", executor="local", job_id="local-1", cancelled=1.0, pid=os.getpid())
    assert run_status(alive).state == "running"
    died = _job(tmp_path / "c", executor="local", job_id="local-1", pid=2**22 + 7)  # no such process
    assert run_status(died).state == "failed"


def test_cancelled_slurm_run_is_cancelled_once_slurm_has_ended_it(tmp_path: Path) -> None:
    run_dir = _job(tmp_path / "a", executor="slurm", job_id="7_1", cancelled=1.0)
    assert run_status(run_dir, {"7_1": "CANCELLED"}).state == "cancelled"
    assert run_status(run_dir, {"7_1": "RUNNING"}).state == "running"
    other = _job(tmp_path / "b", executor="slurm", job_id="7_2")  # scancel'd by hand: no record of why
    assert run_status(other, {"7_2": "CANCELLED"}).state == "failed"


def test_a_done_result_wins_over_a_late_cancel(tmp_path: Path) -> None:
    run_dir = _job(tmp_path / "a", executor="local", job_id="local-1", cancelled=1.0)
    (run_dir / "result.json").write_text(json.dumps({"status": "done", "val_loss": 1.5, "steps": 2}))
    assert run_status(run_dir).state == "done"
