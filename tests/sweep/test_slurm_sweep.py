"""Sweeps on the real local Slurm cluster (slurm/cluster.sh): arrays, relaunch, requeue, failures, DDP, races."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llada_lightning import rundir
from llada_lightning.sweep import launch, statuses, wait_for
from llada_lightning.sweep.state import slurm_states

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

SLURM = ["cluster=local-slurm"]


def _spec(tmp_path: Path, name: str, base: list[str], grid: str) -> str:
    path = tmp_path / f"{name}.yaml"
    lines = "\n".join(f"  - {b}" for b in base)
    path.write_text(f"name: {name}\nroot: {tmp_path}\ncluster: local-slurm\nbase:\n{lines}\ngrid:\n{grid}\n")
    return str(path)


def _wait_jobs_ended(job_ids, timeout: float = 120) -> None:
    """A result is written just before the job's process exits: wait until Slurm has seen it exit."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        live = {j: s for j, s in slurm_states(list(job_ids)).items() if s in ("PENDING", "RUNNING", "COMPLETING")}
        if not live:
            return
        time.sleep(1)
    raise AssertionError(f"jobs still active: {live}")


def _results(runs) -> dict[str, dict]:
    return {r.signature: json.loads((r.run_dir / "result.json").read_text()) for r in runs}


def test_array_sweep_relaunch_resubmit_and_same_results_as_local(tmp_path: Path) -> None:
    slurm_root, local_root = tmp_path / "slurm", tmp_path / "local"
    report = launch("tiny", executor="slurm", overrides=[f"root={slurm_root}", *SLURM], out=io.StringIO())
    assert len(report.submitted) == 4
    array_ids = {job_id.split("_")[0] for job_id in report.submitted.values()}
    assert len(array_ids) == 1  # one job array
    states = wait_for(report.runs, poll_s=2, timeout_s=400)
    assert {s.state for s in states.values()} == {"done"}, states
    _wait_jobs_ended(report.submitted.values())
    first = _results(report.runs)

    again = launch("tiny", executor="slurm", overrides=[f"root={slurm_root}", *SLURM], out=io.StringIO())
    assert again.submitted == {}

    lost = report.runs[1]
    (lost.run_dir / "result.json").unlink()
    redo = launch("tiny", executor="slurm", overrides=[f"root={slurm_root}", *SLURM], out=io.StringIO())
    assert list(redo.submitted) == [lost.signature]
    wait_for(redo.runs, poll_s=2, timeout_s=200)
    assert _results([lost])[lost.signature]["val_loss"] == first[lost.signature]["val_loss"]

    local = launch(
        "tiny",
        executor="local",
        wait=True,
        out=io.StringIO(),
        overrides=[f"root={local_root}", "cluster.torch_threads=1", "cluster.parallel=2"],
    )
    assert [r.signature for r in local.runs] == [r.signature for r in report.runs]
    for sig, res in _results(local.runs).items():
        assert res["val_loss"] == first[sig]["val_loss"] and res["tokens"] == first[sig]["tokens"]


def _wait_step(run_dir: Path, step: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        progress = rundir.read_record(rundir.progress_path(run_dir)) or {}
        if progress.get("step", 0) >= step:
            return
        time.sleep(0.5)
    raise AssertionError(f"{run_dir} never reached step {step}")


def test_requeued_job_resumes_to_identical_weights(tmp_path: Path) -> None:
    base = [
        "model=cpu-0.1m",
        "data.seq_len=32",
        "train.batch_size=4",
        "train.max_steps=80",
        "train.ckpt_every_n_steps=10",
        "train.log_every_n_steps=5",
        "train.val_every_n_steps=0",
        "train.val_batches=2",
    ]
    spec = _spec(tmp_path, "requeue", base, "  objective: [llada]")
    # the uninterrupted reference runs at the same time, in the same environment (threads), elsewhere
    reference = launch(spec, executor="slurm", overrides=[f"root={tmp_path / 'ref'}"], out=io.StringIO())
    report = launch(spec, executor="slurm", out=io.StringIO())
    run = report.runs[0]
    job_id = report.submitted[run.signature]
    _wait_step(run.run_dir, 25, timeout=180)
    assert not (run.run_dir / "result.json").exists()
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    for runs in (report.runs, reference.runs):  # same signature, different sweep roots: wait for each
        states = wait_for(runs, poll_s=2, timeout_s=300)
        assert {s.state for s in states.values()} == {"done"}, states
    show = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "Restarts=1" in show
    ref_dir = reference.runs[0].run_dir
    a = torch.load(run.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    b = torch.load(ref_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_job_dying_without_result_is_reported_failed_within_a_minute(tmp_path: Path) -> None:
    base = [
        "model=cpu-0.1m",
        "data.seq_len=32",
        "train.batch_size=4",
        "train.max_steps=100000",
        "train.log_every_n_steps=5",
        "train.val_every_n_steps=0",
    ]
    spec = _spec(tmp_path, "dies", base, "  objective: [arm]")
    report = launch(spec, executor="slurm", out=io.StringIO())
    run = report.runs[0]
    _wait_step(run.run_dir, 5, timeout=180)
    job_id = report.submitted[run.signature]
    listing = subprocess.run(["scontrol", "listpids", job_id], capture_output=True, text=True).stdout
    pids = [int(line.split()[0]) for line in listing.splitlines()[1:] if line.split() and line.split()[0].isdigit()]
    assert pids, listing
    for pid in pids:  # the training process dies hard (like an OOM kill or a segfault): no result is written
        subprocess.run(["kill", "-9", str(pid)], check=False)
    killed = time.time()
    state = ""
    while time.time() - killed < 60:
        state = statuses(report.runs)[run.signature].state
        if state == "failed":
            break
        time.sleep(1)
    assert state == "failed", f"state {state!r} one minute after the job died"
    assert not (run.run_dir / "result.json").exists()


def test_two_task_ddp_run_through_srun(tmp_path: Path) -> None:
    base = [
        "model=cpu-0.1m",
        "data.seq_len=32",
        "train.batch_size=4",
        "train.max_steps=6",
        "train.devices=2",
        "train.accelerator=cpu",
        "train.strategy=ddp",
        "train.val_batches=2",
    ]
    spec = _spec(tmp_path, "ddp", base, "  objective: [llada]")
    report = launch(spec, executor="slurm", out=io.StringIO())
    states = wait_for(report.runs, poll_s=2, timeout_s=300)
    run = report.runs[0]
    assert states[run.signature].state == "done", states
    result = _results(report.runs)[run.signature]
    assert result["world_size"] == 2 and result["tokens"] == 6 * 2 * 4 * 32
    assert len(list(run.run_dir.glob("result*.json"))) == 1


def test_two_launchers_at_the_same_moment_submit_each_run_once(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "llada_lightning.cli",
        "sweep",
        "launch",
        "tiny",
        "--executor",
        "slurm",
        f"root={tmp_path}",
        *SLURM,
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    submitted = sorted(int(o.split("submitted ")[1].split()[0]) for o in outs)
    assert submitted == [0, 4], outs
    from llada_lightning.sweep import expand, load_spec

    runs = expand(load_spec("tiny", [f"root={tmp_path}"]))
    jobs = {json.loads((r.run_dir / "job.json").read_text())["job_id"] for r in runs}
    assert len(jobs) == 4
    subprocess.run(["scancel", *{j.split("_")[0] for j in jobs}], check=False)


WSD = [
    "model=cpu-0.1m",
    "data.seq_len=32",
    "train.batch_size=4",
    "train.ckpt_every_n_steps=5",
    "train.val_every_n_steps=0",
    "train.val_batches=1",
    "train.lr_schedule=wsd",
    "train.warmup_fraction=0",
    "train.warmup_min_steps=2",
]


def test_shared_trunk_branches_depend_on_their_trunk_and_a_failed_trunk_fails_them(tmp_path: Path) -> None:
    from llada_lightning.sweep.trunks import plan_trunks

    grid = "  objective: [llada]\n  train.max_steps: [10, 20]"
    spec = _spec(tmp_path, "wsd", WSD, grid)
    broken_root = [f"root={tmp_path / 'broken'}"]
    runs = launch(spec, dry_run=True, overrides=broken_root, out=io.StringIO()).runs
    broken = plan_trunks(runs, tmp_path / "broken" / "wsd")
    bad = rundir.last_checkpoint(broken[0].run.run_dir)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a checkpoint")  # this sweep's trunk fails as it starts

    report = launch(spec, executor="slurm", share_trunks=True, out=io.StringIO())
    failing = launch(spec, executor="slurm", share_trunks=True, overrides=broken_root, out=io.StringIO())
    independent = launch(
        spec,
        executor="local",
        wait=True,
        overrides=[f"root={tmp_path / 'alone'}", "cluster.parallel=2"],
        out=io.StringIO(),
    )
    (trunk,) = report.trunks
    trunk_id = report.submitted[trunk.run.signature]
    scripts = list((tmp_path / "wsd" / ".submitit").glob("*/*_submission.sh"))
    depending = [p for p in scripts if f"--dependency=afterok:{trunk_id}" in p.read_text()]
    assert depending and all("--kill-on-invalid-dep=yes" in p.read_text() for p in depending)

    states = wait_for([*report.runs, trunk.run], poll_s=2, timeout_s=400)
    assert {s.state for s in states.values()} == {"done"}, states
    alone = {r.signature: json.loads((r.run_dir / "result.json").read_text()) for r in independent.runs}
    for sig, res in _results(report.runs).items():
        assert res["val_loss"] == alone[sig]["val_loss"] and res["flops_spent"] < res["flops_independent"]

    deadline = time.time() + 240
    while time.time() < deadline:
        states = statuses(failing.runs)
        if all(s.state == "failed" for s in states.values()):
            break
        time.sleep(2)
    for s in states.values():
        assert s.state == "failed" and f"its trunk {broken[0].run.signature} failed" in s.detail, s
