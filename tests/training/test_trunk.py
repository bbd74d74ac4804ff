"""WSD shared trunks at the training level: a branch off the trunk equals an independent WSD run, bitwise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llada_lightning import rundir
from llada_lightning.config.compose import compose
from llada_lightning.training import trunk
from llada_lightning.training.lr_schedule import branch_step, lr_multiplier
from llada_lightning.training.run import train

TINY = [
    "objective=llada",
    "model=cpu-0.1m",
    "data.seq_len=32",
    "train.batch_size=4",
    "train.accumulate_grad_batches=2",
    "objective.random_length_prob=0.2",
    "train.lr_schedule=wsd",
    "train.warmup_fraction=0",
    "train.warmup_min_steps=2",
    "train.val_every_n_steps=0",
    "train.val_batches=1",
    "train.progress_bar=false",
]
BUDGETS = (6, 10)  # branch steps 5 and 8
# differ between any two runs (paths, timings) or exist only on a branch (its compute accounting)
NOT_COMPARED = {"run_dir", "wall_time_s", "segment_wall_time_s", "signature", "flops_spent", "flops_independent"}


def _ckpt(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def test_branch_step_is_where_the_wsd_decay_starts() -> None:
    for total in (2, 6, 10, 37):
        s = branch_step(total, 0.2)
        kw = {"total_steps": total, "warmup": 0, "schedule": "wsd", "min_ratio": 0.1, "decay_fraction": 0.2}
        assert all(lr_multiplier(t, **kw) == 1.0 for t in range(s + 1))
        assert lr_multiplier(s + 1, **kw) < 1.0 or s + 1 == total


def test_branches_off_a_trunk_equal_independent_wsd_runs_bitwise(tmp_path: Path) -> None:
    steps = {T: branch_step(T, 0.2) for T in BUDGETS}
    trunk_dir = tmp_path / "trunk"
    rundir.write_trunk_record(trunk_dir, list(steps.values()))
    trunk_cfg = compose(
        [*TINY, "train.lr_schedule=constant", f"train.max_steps={max(steps.values())}", f"run_dir={trunk_dir}"]
    )
    assert train(trunk_cfg)["status"] == "done"
    for s in steps.values():
        assert rundir.branch_checkpoint(trunk_dir, s).is_file()

    for total, s in steps.items():
        independent, branch = tmp_path / f"independent-{total}", tmp_path / f"branch-{total}"
        train(compose([*TINY, f"train.max_steps={total}", f"run_dir={independent}"]))
        rundir.write_branch_record(branch, trunk_dir, s, list(steps.values()))
        got = train(compose([*TINY, f"train.max_steps={total}", f"run_dir={branch}"]))
        a, b = _ckpt(independent), _ckpt(branch)
        assert b["global_step"] == a["global_step"] == total
        for name in a["state_dict"]:
            assert torch.equal(a["state_dict"][name], b["state_dict"][name]), name
        for sa, sb in zip(
            a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values(), strict=True
        ):
            assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert a["optimizer_states"][0]["param_groups"][0]["lr"] == b["optimizer_states"][0]["param_groups"][0]["lr"]
        ra = json.loads((independent / "result.json").read_text())
        rb = json.loads((branch / "result.json").read_text())
        assert {k: v for k, v in ra.items() if k not in NOT_COMPARED} == {
            k: v for k, v in rb.items() if k not in NOT_COMPARED
        }
        assert dict(got)["val_loss"] == ra["val_loss"]
        assert rb["flops_independent"] == ra["flops_6N"]
        assert 0 < rb["flops_spent"] < rb["flops_independent"]


def test_branch_flops_split_the_trunk_among_its_branches() -> None:
    steps = [5, 8, 8]  # three budgets, two of them branching at the same step
    flops_at = float  # one FLOP per step
    spent = [trunk.branch_flops({"step": s, "branch_steps": steps}, flops_at, s + 2) for s in steps]
    assert spent[0] == {"flops_spent": pytest.approx(5 / 3 + 2), "flops_independent": 7.0}
    assert spent[1]["flops_spent"] == pytest.approx(5 / 3 + 3 / 2 + 2)
    trunk_total, branch_total = 8.0, 3 * 2.0
    assert sum(s["flops_spent"] for s in spent) == pytest.approx(trunk_total + branch_total)


def test_branch_without_its_trunk_checkpoint_is_one_line(tmp_path: Path) -> None:
    rundir.write_branch_record(tmp_path / "b", tmp_path / "no-trunk", 5, [5])
    with pytest.raises(Exception, match="does not exist"):
        train(compose([*TINY, "train.max_steps=6", f"run_dir={tmp_path / 'b'}"]))


def test_a_branch_starts_from_its_trunks_sharded_checkpoint_directory(tmp_path: Path) -> None:
    """A trunk trained with train.strategy=fsdp saves directories (shards + meta.pt): the branch copies one whole."""
    source = rundir.branch_checkpoint(tmp_path / "trunk", 5)
    source.mkdir(parents=True)
    (source / "__0_0.distcp").write_bytes(b"shard")
    torch.save({"global_step": 5}, source / rundir.SHARDED_META)
    rundir.write_branch_record(tmp_path / "b", tmp_path / "trunk", 5, [5])
    trunk.seed_branch(tmp_path / "b")
    last = rundir.last_checkpoint(tmp_path / "b")
    assert sorted(p.name for p in last.iterdir()) == ["__0_0.distcp", rundir.SHARDED_META]
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temporary copy left
    assert rundir.checkpoint_exists(last) and not trunk.BranchCheckpoints(tmp_path / "trunk", [5])._missing(5)


SLOW = [  # a few hundred ms a step: slow enough to kill mid-run
    "objective=llada",
    "model=cpu-0.1m",
    "data.seq_len=64",
    "train.batch_size=8",
    "train.accumulate_grad_batches=2",
    "objective.random_length_prob=0.2",
    "train.lr_schedule=wsd",
    "train.warmup_fraction=0",
    "train.warmup_min_steps=2",
    "train.decay_fraction=0.5",
    "train.ckpt_every_n_steps=5",
    "train.val_every_n_steps=20",
    "train.val_batches=1",
    "train.progress_bar=false",
]


def _llada_train(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "llada_lightning.cli", "train", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(args: list[str]) -> str:
    proc = _llada_train(args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def _kill_at(args: list[str], run_dir: Path, after: int, before: int) -> int:
    """Start `llada train`, SIGKILL it once its last.ckpt is past step `after`; the step it was killed at."""
    proc = _llada_train(args)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    step = -1
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_file():
            step = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]
            if step > after:
                break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert after < step < before and not (run_dir / "result.json").exists(), step
    return step


def test_trunk_and_branch_killed_mid_run_resume_to_identical_results(tmp_path: Path) -> None:
    s = branch_step(60, 0.5)  # 30: the trunk runs 30 steps, the branch 30 more
    trunk_args = ["train.lr_schedule=constant", f"train.max_steps={s}"]
    dirs = {}
    for name in ("reference", "killed"):
        dirs[name] = tmp_path / name / "trunk", tmp_path / name / "branch"
        rundir.write_trunk_record(dirs[name][0], [s])
        rundir.write_branch_record(dirs[name][1], dirs[name][0], s, [s])
    (ref_trunk, ref_branch), (trunk_dir, branch_dir) = dirs["reference"], dirs["killed"]
    _finish([*SLOW, *trunk_args, f"run_dir={ref_trunk}"])
    _finish([*SLOW, "train.max_steps=60", f"run_dir={ref_branch}"])

    _kill_at([*SLOW, *trunk_args, f"run_dir={trunk_dir}"], trunk_dir, 5, s)
    assert not rundir.branch_checkpoint(trunk_dir, s).exists()
    _finish([*SLOW, *trunk_args, f"run_dir={trunk_dir}"])
    a = torch.load(rundir.branch_checkpoint(ref_trunk, s), map_location="cpu", weights_only=False)
    b = torch.load(rundir.branch_checkpoint(trunk_dir, s), map_location="cpu", weights_only=False)
    assert a["global_step"] == b["global_step"] == s
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])

    _kill_at([*SLOW, "train.max_steps=60", f"run_dir={branch_dir}"], branch_dir, s + 5, 60)
    out = _finish([*SLOW, "train.max_steps=60", f"run_dir={branch_dir}"])
    assert "Restoring states from the checkpoint" in out
    ref, got = _ckpt(ref_branch), _ckpt(branch_dir)
    assert all(torch.equal(ref["state_dict"][k], got["state_dict"][k]) for k in ref["state_dict"])
    ra = json.loads((ref_branch / "result.json").read_text())
    rb = json.loads((branch_dir / "result.json").read_text())
    for key in ("val_loss", "tokens", "flops_6N", "flops_spent", "flops_independent", "steps"):
        assert ra[key] == rb[key], key
