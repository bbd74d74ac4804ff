"""The local executor: a sweep finishes, relaunching redoes nothing, a lost result is redone exactly once."""

from __future__ import annotations

import io
import json
from pathlib import Path

from llada_lightning.sweep import launch, status_table, statuses, wait_for

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
