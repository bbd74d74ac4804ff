"""End-to-end checks of the local Slurm cluster (slurm/cluster.sh) with sbatch, srun and submitit.

The submitted callables are stdlib functions (operator.mul, os._exit): they unpickle in the job without
importing this test module.
"""

from __future__ import annotations

import operator
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import submitit
from submitit.core.utils import UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

FAILED_STATES = {"FAILED", "CANCELLED", "NODE_FAIL", "TIMEOUT", "OUT_OF_MEMORY", "BOOT_FAIL"}


def run(*cmd: str, timeout: float = 30) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout).stdout


def sbatch(*args: str) -> str:
    return run("sbatch", "--parsable", *args).strip().split(";")[0]


def scontrol_job(job_id: str) -> dict[str, str]:
    out = run("scontrol", "-o", "show", "job", job_id)
    fields = {}
    for token in out.split():
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_jobs_done(jobs: list[submitit.Job], timeout: float) -> None:
    wait_for(lambda: all(job.done() for job in jobs), timeout, f"submitit jobs {[j.job_id for j in jobs]}")


def wait_slurm_states(jobs: list[submitit.Job], timeout: float) -> set[str]:
    """Slurm's final states of `jobs`: a result pickle can exist while Slurm still says RUNNING/COMPLETING."""

    def states() -> set[str]:
        return {job.watcher.get_state(job.job_id, mode="force") for job in jobs}

    wait_for(lambda: not states() & {"RUNNING", "COMPLETING", "PENDING"}, timeout, "Slurm to finish the jobs")
    return states()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def executor(tmp_path: Path) -> submitit.AutoExecutor:
    ex = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    ex.update_parameters(timeout_min=10, slurm_partition="debug", cpus_per_task=1, nodes=1, tasks_per_node=1)
    return ex


@pytest.mark.timeout(60)
def test_sbatch_wrap_runs(tmp_path: Path) -> None:
    out = tmp_path / "hi.out"
    job_id = sbatch("--wrap", "echo hi", "-o", str(out))
    wait_for(lambda: scontrol_job(job_id)["JobState"] == "COMPLETED", 30, f"job {job_id} to complete")
    assert out.read_text().strip() == "hi"


@pytest.mark.timeout(90)
def test_submitit_result(executor: submitit.AutoExecutor) -> None:
    job = executor.submit(operator.mul, 6, 7)
    wait_jobs_done([job], 60)
    assert job.result() == 42
    assert wait_slurm_states([job], 20) == {"COMPLETED"}


@pytest.mark.timeout(120)
def test_submitit_array_with_parallelism(executor: submitit.AutoExecutor) -> None:
    executor.update_parameters(slurm_array_parallelism=2)
    jobs = executor.map_array(operator.mul, [1, 2, 3, 4], [10, 10, 10, 10])
    assert len(jobs) == 4
    assert all(job.job_id.startswith(f"{jobs[0].job_id.split('_')[0]}_") for job in jobs)
    wait_jobs_done(jobs, 90)
    assert [job.result() for job in jobs] == [10, 20, 30, 40]
    assert wait_slurm_states(jobs, 20) == {"COMPLETED"}


@pytest.mark.timeout(90)
def test_submitit_job_dying_without_result_fails(executor: submitit.AutoExecutor) -> None:
    job = executor.submit(os._exit, 3)
    t0 = time.monotonic()
    wait_jobs_done([job], 60)
    assert job.state in FAILED_STATES, job.state
    with pytest.raises(UncompletedJobError):
        job.result()
    assert time.monotonic() - t0 < 60


@pytest.mark.timeout(90)
def test_scontrol_requeue_restarts_job(tmp_path: Path) -> None:
    starts = tmp_path / "starts.txt"
    script = tmp_path / "requeue.sh"
    script.write_text(f'#!/bin/bash\necho "start $SLURM_RESTART_COUNT" >> {starts}\nexec sleep 300\n')
    job_id = sbatch("--requeue", "-o", str(tmp_path / "requeue.out"), str(script))
    try:
        wait_for(lambda: len(lines(starts)) == 1, 30, "the first start")
        wait_for(lambda: scontrol_job(job_id)["JobState"] == "RUNNING", 10, "RUNNING")
        run("scontrol", "requeue", job_id)
        wait_for(lambda: len(lines(starts)) == 2, 60, "the start after requeue")
        info = scontrol_job(job_id)
        assert info["Restarts"] == "1"
        assert lines(starts)[1] == "start 1"
    finally:
        subprocess.run(["scancel", job_id], check=False, timeout=30)


@pytest.mark.timeout(60)
def test_srun_two_tasks() -> None:
    out = run("srun", "-n", "2", "-p", "debug", "bash", "-c", "echo $SLURM_PROCID/$SLURM_NTASKS", timeout=45)
    assert sorted(out.split()) == ["0/2", "1/2"]


@pytest.mark.timeout(90)
def test_submitit_two_tasks_per_node(executor: submitit.AutoExecutor) -> None:
    """The layout of a 2-process CPU DDP run: one sbatch job, srun starts 2 tasks (ranks 0 and 1)."""
    executor.update_parameters(tasks_per_node=2)
    job = executor.submit(os.getenv, "SLURM_PROCID")
    wait_jobs_done([job], 60)
    assert sorted(job.results()) == ["0", "1"]


@pytest.mark.timeout(60)
def test_sacct_answers_submitit_queries() -> None:
    """The sacct (shim) output for a pending (held) array, as submitit parses it, then after cancel."""
    job_id = sbatch("--hold", "--array=0-3%2", "-o", "/dev/null", "--wrap", "true")
    try:
        watcher = SlurmInfoWatcher()
        cmd = ["sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", job_id]
        out = run(*cmd)
        assert out.splitlines()[0] == "JobID|State|NodeList"
        info = watcher.read_info(out)
        assert {f"{job_id}_{i}" for i in range(4)} <= set(info)
        assert {info[f"{job_id}_{i}"]["State"] for i in range(4)} == {"PENDING"}
    finally:
        run("scancel", job_id)
    wait_for(
        lambda: watcher.read_info(run(*cmd)).get(f"{job_id}_0", {}).get("State") == "CANCELLED",
        20,
        "CANCELLED",
    )
