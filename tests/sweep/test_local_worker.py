"""The local worker never starts a run cancelled (or relaunched elsewhere) after its queue was written."""

from __future__ import annotations

import json
from pathlib import Path

from llada_lightning.sweep.local_worker import main


def _queued(sweep_dir: Path, name: str, job: dict | None) -> dict:
    run_dir = sweep_dir / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("{}\n")
    if job is not None:
        (run_dir / "job.json").write_text(json.dumps(job))
    return {"run_dir": str(run_dir), "record": {"executor": "local", "job_id": "local-1", "name": name}}


def test_worker_skips_cancelled_relaunched_and_removed_runs(tmp_path: Path, capsys) -> None:
    sweep_dir = tmp_path / "sweep"
    runs = [
        _queued(sweep_dir, "cancelled", {"executor": "local", "job_id": "local-1", "cancelled": 1.0}),
        _queued(sweep_dir, "relaunched", {"executor": "local", "job_id": "local-2", "worker_pid": 1}),
        _queued(sweep_dir, "removed", None),
    ]
    queue = sweep_dir / ".local" / "queue-1.json"
    queue.parent.mkdir()
    queue.write_text(json.dumps({"parallel": 1, "runs": runs, "lock": str(sweep_dir / ".launch.lock")}))
    assert main([str(queue)]) == 0
    for run in runs:
        run_dir = Path(run["run_dir"])
        assert not (run_dir / "job.log").exists()  # never started
        job = json.loads((run_dir / "job.json").read_text()) if (run_dir / "job.json").exists() else {}
        assert "pid" not in job
    out = capsys.readouterr().out
    assert "cancelled: not started: cancelled" in out
    assert "relaunched: not started: taken over by job local-2" in out
    assert "removed: not started: its job.json is gone" in out
