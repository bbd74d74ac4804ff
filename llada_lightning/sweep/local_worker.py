"""The local executor's detached worker: runs a queue of sweep runs on this machine, N at a time.

Started by `llada sweep launch --executor local`; each run is a child process
(`python -m llada_lightning.sweep.job config.yaml`) whose pid is recorded in the run's job.json, so
`llada sweep status` knows it from the run directory alone. Right before starting a run the worker re-reads
its job.json under the sweep's lock (the one `llada sweep cancel` holds): a run cancelled since the launch, or
taken over by a later launch (another job id), or whose job.json is gone, is skipped, never started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llada_lightning import rundir
from llada_lightning.io import atomic_write_json
from llada_lightning.sweep.state import LOCK, file_lock


def skip_reason(run: dict[str, Any]) -> str:
    """Why the queued `run` must not start now ("" when it may): cancelled, relaunched elsewhere, or gone."""
    run_dir = Path(run["run_dir"])
    if not run_dir.is_dir():
        return "its run directory is gone"
    job = rundir.read_record(rundir.job_path(run_dir))
    if job is None:
        return f"its {rundir.JOB} is gone"
    if job.get("cancelled"):
        return "cancelled"
    if str(job.get("job_id")) != str(run["record"].get("job_id")):
        return f"taken over by job {job.get('job_id')}"
    return ""


def start(run: dict[str, Any], env: dict[str, str]) -> subprocess.Popen:
    """Start one run's job process and record its pid in its job.json."""
    run_dir = Path(run["run_dir"])
    log = run_dir / rundir.JOB_LOG
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llada_lightning.sweep.job", str(rundir.config_path(run_dir))],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    record = {**run["record"], "pid": proc.pid, "started": time.time(), "log": str(log)}
    atomic_write_json(rundir.job_path(run_dir), record)
    return proc


def start_unless_cancelled(run: dict[str, Any], env: dict[str, str], lock: Path) -> subprocess.Popen | None:
    """Start `run` unless it was cancelled (or taken over) since the launch; checked and started under `lock`."""
    reason = "its sweep directory is gone"
    if lock.parent.is_dir():
        with file_lock(lock):
            reason = skip_reason(run)
            if not reason:
                return start(run, env)
    print(f"{run['record'].get('name', run['run_dir'])}: not started: {reason}", flush=True)
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the queue file `argv[0]` to completion, `parallel` runs at a time; 1 if any run failed."""
    args = sys.argv[1:] if argv is None else argv
    queue_file = Path(args[0])
    queue = json.loads(queue_file.read_text())
    parallel = int(queue["parallel"])
    lock = Path(queue.get("lock") or queue_file.parent.parent / LOCK)  # <sweep dir>/.local/queue-*.json
    env = {**os.environ}
    if queue.get("torch_threads"):
        env["LLADA_TORCH_THREADS"] = str(queue["torch_threads"])
        env.setdefault("OMP_NUM_THREADS", str(queue["torch_threads"]))
    pending = list(queue["runs"])
    active: list[subprocess.Popen] = []
    failures = 0
    while pending or active:
        while pending and len(active) < parallel:
            proc = start_unless_cancelled(pending.pop(0), env, lock)
            if proc is not None:
                active.append(proc)
        if not active:
            continue
        time.sleep(0.2)
        still = []
        for proc in active:
            if proc.poll() is None:
                still.append(proc)
            elif proc.returncode:
                failures += 1
        active = still
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
