"""The local executor: a sweep finishes, relaunching redoes nothing, a lost result is redone exactly once."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from tiny_specs import write_spec

from llada_lightning import rundir
from llada_lightning.sweep import cancel, expand, launch, load_spec, status_table, statuses, wait_for
from llada_lightning.sweep.state import pid_alive

OVERRIDES = ["cluster.torch_threads=1", "cluster.parallel=2"]


def test_local_sweep_relaunch_and_resubmit_exactly_the_lost_run(tmp_path: Path) -> None:
    root = [f"root={tmp_path}", *OVERRIDES]
    report = launch("tiny", executor="local", overrides=root, wait=True, out=io.StringIO())
    assert len(report.submitted) == 4
    states = statuses(report.runs)
    assert {s.state for s in states.values()} == {"done"}
    results = {r.signature: json.loads((r.run_dir / "result.json").read_text()) for r in report.runs}
    assert all(res["status"] == "done" and res["steps"] == 10 for res in results.values())

    again = launch("tiny", executor="local", overrides=root, out=io.StringIO())
    assert again.submitted == {} and set(again.actions.values()) == {"skip: done"}

    lost = report.runs[2]
    (lost.run_dir / "result.json").unlink()
    plan = launch("tiny", executor="local", overrides=root, dry_run=True, out=io.StringIO())
    assert [s for s, a in plan.actions.items() if a.startswith("submit")] == [lost.signature], plan.actions
    redo = launch("tiny", executor="local", overrides=root, wait=True, out=io.StringIO())
    assert list(redo.submitted) == [lost.signature]
    wait_for(redo.runs, timeout_s=120)
    redone = json.loads((lost.run_dir / "result.json").read_text())
    assert redone["val_loss"] == results[lost.signature]["val_loss"]  # resumed from its final checkpoint

    table = io.StringIO()
    status_table("tiny", root, out=table)
    assert table.getvalue().count(" done ") == 4 and "done: 4" in table.getvalue()


def test_dry_run_prints_every_run_and_total_compute(tmp_path: Path) -> None:
    out = io.StringIO()
    report = launch("tiny", dry_run=True, overrides=[f"root={tmp_path}"], out=out)
    text = out.getvalue()
    assert all(run.name in text and run.signature in text for run in report.runs)
    total = sum(run.flops("6N") for run in report.runs)
    assert f"total compute: {total:.3g} FLOPs (6N)" in text
    assert not any(run.run_dir.exists() for run in report.runs)  # a dry run writes nothing


def _wait_exited(pid: int, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while pid_alive(pid):
        assert time.time() < deadline, f"process {pid} still alive after {timeout_s} s"
        time.sleep(0.2)


def test_cancel_right_after_a_local_launch_starts_no_queued_run(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, grid="  train.seed: [0, 1, 2]")
    overrides = [f"root={tmp_path}", "cluster.torch_threads=1", "cluster.parallel=1"]
    report = launch(spec, executor="local", overrides=overrides, out=io.StringIO())
    worker = rundir.read_record(rundir.job_path(report.runs[-1].run_dir))["worker_pid"]  # the last run: not started yet
    assert sorted(cancel(spec, "", overrides, out=io.StringIO())) == sorted(r.name for r in report.runs)
    _wait_exited(worker)
    for run in report.runs[1:]:  # the first may have started (then it was stopped); the others never start
        job = rundir.read_record(rundir.job_path(run.run_dir))
        assert job["cancelled"] and "pid" not in job, job
        assert not (run.run_dir / "job.log").exists() and not (run.run_dir / "progress.json").exists()
    table = io.StringIO()
    states = status_table(spec, overrides, out=table)
    assert {s.state for s in states.values()} == {"cancelled"} and "cancelled: 3" in table.getvalue()
    relaunch = launch(spec, executor="local", overrides=overrides, dry_run=True, out=io.StringIO())
    assert set(relaunch.actions.values()) == {"submit (cancelled)"}


def test_status_without_the_launch_override_lists_the_launched_runs(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    report = launch(spec, executor="debug", overrides=[f"root={tmp_path}", "train.lr=2e-3"], out=io.StringIO())
    table = io.StringIO()
    states = status_table(spec, [f"root={tmp_path}"], out=table)
    lines = table.getvalue().splitlines()
    for run in report.runs:
        assert states[run.signature].state == "done"
        line = next(t for t in lines if run.signature in t)
        assert line.startswith(run.name) and " done " in line and " 2/2 " in line, line
    for run in expand(load_spec(spec, [f"root={tmp_path}"])):  # the spec's runs without the override
        assert states[run.signature].state == "pending"
    assert "done: 2  pending: 2" in table.getvalue()
