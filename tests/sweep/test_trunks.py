"""WSD shared trunks in a sweep: grouping, equality with independent runs, relaunch, a lost branch, a failed trunk."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from llada_lightning import rundir
from llada_lightning.config.errors import ConfigError
from llada_lightning.scaling.collect import collect
from llada_lightning.sweep import expand, launch, load_spec, status_table, statuses
from llada_lightning.sweep.trunks import TRUNKS, plan_trunks

BASE = [
    "model=cpu-0.1m",
    "data.seq_len=32",
    "train.batch_size=4",
    "train.val_every_n_steps=4",
    "train.val_batches=1",
    "train.ckpt_every_n_steps=3",
    "train.progress_bar=false",
    "train.lr_schedule=wsd",
    "train.warmup_fraction=0",
    "train.warmup_min_steps=2",
    "objective.random_length_prob=0.2",
]
LOCAL = ["cluster.torch_threads=1", "cluster.parallel=2"]


def _spec(
    tmp_path: Path, name: str = "wsd", steps: str = "[6, 10, 15]", share: bool | str = True, extra: str = ""
) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{name}.yaml"
    base = "\n".join(f"  - {b}" for b in BASE)
    grid = f"  objective: [llada, arm]\n  train.max_steps: {steps}\n{extra}"
    text = f"name: {name}\nroot: {tmp_path}\ncluster: local\nshare_trunks: {str(share).lower()}\nbase:\n{base}\n"
    path.write_text(text + f"grid:\n{grid}")
    return str(path)


def _results(runs) -> dict[str, dict]:
    return {r.signature: json.loads(rundir.result_path(r.run_dir).read_text()) for r in runs}


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(rundir.last_checkpoint(run_dir), map_location="cpu", weights_only=False)["state_dict"]


def test_runs_differing_only_in_budget_share_a_trunk(tmp_path: Path) -> None:
    spec = _spec(tmp_path, extra="  train.seed: [0, 1]\n")
    runs = expand(load_spec(spec))
    trunks = plan_trunks(runs, tmp_path / "wsd")
    assert len(trunks) == 4  # objective x seed
    for trunk in trunks:
        members = [b.run for b in trunk.branches]
        assert sorted(r.steps for r in members) == [6, 10, 15]
        assert len({(r.cfg.objective.name, r.cfg.train.seed) for r in members}) == 1
        assert trunk.steps == [5, 8, 12]  # T - round(0.2 T): where each WSD decay starts
        assert trunk.run.cfg.train.max_steps == 12 and trunk.run.cfg.train.lr_schedule == "constant"
        assert trunk.run.run_dir.parent == tmp_path / "wsd" / TRUNKS
    # a budget added later finds the same trunk, which gains its branch step
    more = plan_trunks(
        expand(load_spec(_spec(tmp_path, steps="[6, 10, 15, 20]", extra="  train.seed: [0, 1]\n"))), tmp_path / "wsd"
    )
    assert [t.run.signature for t in more] == [t.run.signature for t in trunks]
    assert all(t.steps == [5, 8, 12, 16] and t.run.cfg.train.max_steps == 16 for t in more)
    # a run shorter than its warmup (cut to its own length) trains on its own; a trunk runs at least the warmup
    warm = plan_trunks(expand(load_spec(_spec(tmp_path, extra="  train.warmup_min_steps: [7]\n"))), tmp_path / "wsd")
    assert all(sorted(b.run.steps for b in t.branches) == [10, 15] and t.run.steps == 12 for t in warm)
    warm = plan_trunks(
        expand(load_spec(_spec(tmp_path, steps="[9, 10]", extra="  train.warmup_min_steps: [9]\n"))), tmp_path / "wsd"
    )
    assert all(t.steps == [7, 8] and t.run.steps == 9 for t in warm)
    # a run alone in its group trains on its own
    assert plan_trunks(expand(load_spec(_spec(tmp_path, steps="[6]"))), tmp_path / "wsd") == []
    # an ablation against cosine: only the WSD runs share trunks
    mixed = expand(load_spec(_spec(tmp_path, extra="  train.lr_schedule: [cosine, wsd]\n")))
    shared = plan_trunks(mixed, tmp_path / "wsd")
    assert len(shared) == 2 and all(b.run.cfg.train.lr_schedule == "wsd" for t in shared for b in t.branches)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr_schedule=cosine", "share_trunks needs train.lr_schedule=wsd, but every run uses cosine"),
        ("train.warmup_fraction=0.1", "train.warmup_fraction=0 train.warmup_min_steps="),
    ],
)
def test_share_trunks_refuses_runs_that_cannot_share_one(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        launch(_spec(tmp_path), overrides=[override], dry_run=True, out=io.StringIO())


def test_shared_trunk_sweep_equals_independent_runs_relaunches_nothing_and_redoes_one_lost_branch(
    tmp_path: Path,
) -> None:
    shared_out, alone_out = io.StringIO(), io.StringIO()
    shared = launch(_spec(tmp_path / "a"), executor="local", wait=True, overrides=LOCAL, out=shared_out)
    alone = launch(_spec(tmp_path / "b", share=False), executor="local", wait=True, overrides=LOCAL, out=alone_out)
    assert len(shared.trunks) == 2 and len(shared.submitted) == 8 and len(alone.submitted) == 6
    assert [r.signature for r in shared.runs] == [r.signature for r in alone.runs]  # the same runs, the same dirs
    got, want = _results(shared.runs), _results(alone.runs)
    for run in shared.runs:
        a, b = got[run.signature], want[run.signature]
        assert a["status"] == b["status"] == "done"
        assert a["val_loss"] == b["val_loss"] and a["tokens"] == b["tokens"] and a["flops_6N"] == b["flops_6N"]
        assert a["flops_independent"] == b["flops_6N"] and a["flops_spent"] < a["flops_independent"]
        other = alone.runs[[r.signature for r in alone.runs].index(run.signature)]
        wa, wb = _weights(run.run_dir), _weights(other.run_dir)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the trunk is not a run of the study: collect sees the six budgets' runs only
    rows = collect(tmp_path / "a" / "wsd", verbose=False)
    assert len(rows) == 6 and all(".trunks" not in str(r["run_dir"]) for r in rows.rows)

    again = launch(_spec(tmp_path / "a"), executor="local", wait=True, overrides=LOCAL, out=io.StringIO())
    assert again.submitted == {} and set(again.actions.values()) == {"skip: done"}

    lost = shared.runs[1]
    rundir.result_path(lost.run_dir).unlink()
    redo = launch(_spec(tmp_path / "a"), executor="local", wait=True, overrides=LOCAL, out=io.StringIO())
    assert list(redo.submitted) == [lost.signature]  # neither the trunk nor another branch
    assert _results([lost])[lost.signature]["val_loss"] == got[lost.signature]["val_loss"]

    # a branch that lost its whole directory starts again from the finished trunk's checkpoint

    shutil.rmtree(lost.run_dir)
    redo = launch(_spec(tmp_path / "a"), executor="local", wait=True, overrides=LOCAL, out=io.StringIO())
    assert list(redo.submitted) == [lost.signature]
    assert _results([lost])[lost.signature]["val_loss"] == got[lost.signature]["val_loss"]


def test_a_failed_trunk_fails_its_branches_with_the_reason_and_a_relaunch_recovers(tmp_path: Path) -> None:
    spec = _spec(tmp_path, steps="[6, 10]", extra="")
    trunks = plan_trunks(expand(load_spec(spec)), tmp_path / "wsd")
    broken = trunks[0]
    bad = rundir.last_checkpoint(broken.run.run_dir)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a checkpoint")  # the trunk cannot resume: it fails before training a step
    report = launch(spec, executor="local", wait=True, overrides=LOCAL, out=io.StringIO())
    states = statuses(report.runs)
    branches = {b.run.signature for b in broken.branches}
    for run in report.runs:
        state = states[run.signature]
        if run.signature in branches:
            assert state.state == "failed", state
            assert f"its trunk {broken.run.signature} failed" in state.detail and "checkpoint" in state.detail
        else:
            assert state.state == "done", state
    table = io.StringIO()
    status_table(spec, out=table)
    assert table.getvalue().count(f"its trunk {broken.run.signature} failed") == 2

    bad.unlink()
    again = launch(spec, executor="local", wait=True, overrides=LOCAL, out=io.StringIO())
    assert set(again.submitted) == branches | {broken.run.signature}
    assert {s.state for s in statuses(report.runs).values()} == {"done"}


def test_cli_share_trunks_flag_plans_trunks_and_their_saving(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from llada_lightning.cli import main

    spec = _spec(tmp_path, share=False)
    assert main(["sweep", "launch", spec, "--dry-run"]) == 0
    assert "shared trunks" not in capsys.readouterr().out
    assert main(["sweep", "launch", spec, "--share-trunks", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("trunk-") == 2 and "shared trunks: 2 trunk(s) for 6 runs" in out
    assert not (tmp_path / "wsd" / TRUNKS).exists()  # a dry run writes nothing


def test_debug_executor_runs_trunks_before_their_branches(tmp_path: Path) -> None:
    spec = _spec(tmp_path, steps="[6, 10]")
    report = launch(spec, executor="debug", out=io.StringIO())
    assert list(report.submitted)[:2] == [t.run.signature for t in report.trunks]
    results = _results(report.runs)
    assert len(results) == 4 and all(
        r["status"] == "done" and r["flops_spent"] < r["flops_6N"] for r in results.values()
    )


def test_budgets_added_later_extend_the_finished_trunk_or_train_alone(tmp_path: Path) -> None:
    first = launch(
        _spec(tmp_path / "a", steps="[6, 10]"), executor="local", wait=True, overrides=LOCAL, out=io.StringIO()
    )
    assert len(first.trunks) == 2
    # a larger budget: the finished trunks resume from step 8 to 12 and save the new branch checkpoint
    out = io.StringIO()
    more = launch(_spec(tmp_path / "a", steps="[6, 10, 15]"), executor="local", wait=True, overrides=LOCAL, out=out)
    new = {r.signature for r in more.runs if r.steps == 15}
    assert set(more.submitted) == new | {t.run.signature for t in first.trunks}
    assert all(more.actions[t.run.signature] == "submit (extend to 12 steps)" for t in more.trunks)
    # a smaller budget than the trunks have passed: its runs train on their own
    fewer = launch(
        _spec(tmp_path / "a", steps="[4, 6, 10, 15]"), executor="local", wait=True, overrides=LOCAL, out=io.StringIO()
    )
    small = {r.signature for r in fewer.runs if r.steps == 4}
    assert set(fewer.submitted) == small
    assert all(not rundir.branch_path(r.run_dir).exists() for r in fewer.runs if r.steps == 4)
    alone = launch(
        _spec(tmp_path / "b", steps="[4, 6, 10, 15]", share=False),
        executor="local",
        wait=True,
        overrides=LOCAL,
        out=io.StringIO(),
    )
    got, want = _results(fewer.runs), _results(alone.runs)
    for run in fewer.runs:
        assert got[run.signature]["val_loss"] == want[run.signature]["val_loss"], run.name
        wa, wb = _weights(run.run_dir), _weights(alone.runs[0].run_dir.parent / run.signature)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), run.name


def test_share_trunks_always_makes_a_lone_run_a_trunk_that_the_next_budget_extends(tmp_path: Path) -> None:
    assert plan_trunks(expand(load_spec(_spec(tmp_path, steps="[6]", share="always"))), tmp_path / "wsd", True)
    first = launch(
        _spec(tmp_path, steps="[10]", share="always"), executor="local", wait=True, overrides=LOCAL, out=io.StringIO()
    )
    assert len(first.trunks) == 2 and len(first.submitted) == 4  # each objective: a trunk to step 8, a branch
    more = launch(
        _spec(tmp_path, steps="[10, 15]", share="always"),
        executor="local",
        wait=True,
        overrides=LOCAL,
        out=io.StringIO(),
    )
    assert all(more.actions[t.run.signature] == "submit (extend to 12 steps)" for t in more.trunks)
    assert {s.state for s in statuses(more.runs).values()} == {"done"}
    with pytest.raises(ConfigError, match="share_trunks must be true, false or always"):
        load_spec(_spec(tmp_path, share="sometimes"))
