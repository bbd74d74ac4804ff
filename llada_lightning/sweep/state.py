"""A run's state, from its directory and the scheduler, so it survives the launcher exiting.

States: pending (never submitted), queued, running, done, failed, preempted (waiting to resume from its
checkpoint), cancelled (by `llada sweep cancel`; relaunched by the next launch like a failed run), unknown (the
scheduler cannot say; never resubmitted, to avoid duplicates).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llada_lightning import rundir

LOCK = ".launch.lock"  # in the sweep directory: serialises launchers, `cancel` and the local worker's starts
ACTIVE = ("queued", "running", "preempted", "unknown")

# Slurm job states (squeue/sacct) -> our run states, given no `done` result.
_SLURM = {
    "PENDING": "queued",
    "CONFIGURING": "running",
    "RUNNING": "running",
    "COMPLETING": "running",
    "SUSPENDED": "running",
    "REQUEUED": "preempted",
    "REQUEUE_HOLD": "preempted",
    "REQUEUE_FED": "preempted",
    "PREEMPTED": "preempted",
    "RESIZING": "running",
    "COMPLETED": "failed",  # finished without a done result
    "FAILED": "failed",
    "CANCELLED": "failed",
    "TIMEOUT": "failed",
    "NODE_FAIL": "failed",
    "OUT_OF_MEMORY": "failed",
    "BOOT_FAIL": "failed",
    "DEADLINE": "failed",
}


@dataclass
class RunStatus:
    state: str
    job_id: str = ""
    log: str = ""
    step: int | None = None
    total: int | None = None
    val_loss: float | None = None
    detail: str = ""


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing) for the duration of the block."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def pid_alive(pid: int | None) -> bool:
    """True if the process exists and is not a zombie (this machine's init may never reap them)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _run(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Slurm state per job id (`123` or `123_4`): squeue for live jobs, then sacct for finished ones."""
    if not job_ids:
        return {}
    wanted = set(job_ids)
    states: dict[str, str] = {}
    out = _run(["squeue", "-h", "-r", "-o", "%i|%T", "-t", "all"])
    for line in (out or "").splitlines():
        jid, _, state = line.strip().partition("|")
        if jid in wanted:
            states[jid] = state.split()[0] if state else "UNKNOWN"
    missing = sorted(wanted - states.keys())
    if missing:
        out = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(missing)])
        for line in (out or "").splitlines():
            jid, _, state = line.strip().partition("|")
            if jid in wanted and jid not in states:
                states[jid] = state.split()[0] if state else "UNKNOWN"
    return states


def run_status(run_dir: Path, slurm: dict[str, str] | None = None) -> RunStatus:
    """The state of one run; `slurm` maps job ids to Slurm states (see `slurm_states`)."""
    result = rundir.read_record(rundir.result_path(run_dir))
    job = rundir.read_record(rundir.job_path(run_dir)) or {}
    progress = rundir.read_record(rundir.progress_path(run_dir)) or {}
    status = RunStatus(
        state="pending",
        job_id=str(job.get("job_id", "")),
        log=str(job.get("log", "")),
        step=progress.get("step"),
        total=progress.get("total"),
        val_loss=progress.get("val/loss"),
    )
    if result is not None and result.get("status") == "done":
        status.state, status.val_loss, status.step = "done", result.get("val_loss"), result.get("steps")
        status.total = result.get("steps")
        return status
    executor = job.get("executor")
    if executor is None:
        if result is not None and result.get("status") == "failed":
            status.state, status.detail = "failed", str(result.get("error", ""))
        return status
    if executor == "slurm":
        state = (slurm or {}).get(status.job_id, "UNKNOWN")
        mapped = _SLURM.get(state, "unknown")
        if mapped == "queued" and rundir.checkpoint_exists(rundir.last_checkpoint(run_dir)):
            mapped = "preempted"  # back in the queue after a requeue, with a checkpoint to resume
        if mapped == "failed" and job.get("cancelled"):
            mapped = "cancelled"
        status.state, status.detail = mapped, state
    elif executor == "local":
        if pid_alive(job.get("pid")):
            status.state = "running"  # also a cancelled run until its process has exited
        elif job.get("cancelled"):
            status.state = "cancelled"
        elif not job.get("pid") and pid_alive(job.get("worker_pid")):
            status.state = "queued"
        else:
            status.state = "failed"
    else:  # debug: in-process, finished when the launcher returned
        status.state = "failed"
    if status.state == "failed" and result is not None and result.get("status") == "failed":
        status.detail = str(result.get("error", ""))
    return status
