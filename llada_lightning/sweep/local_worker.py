"""The local executor's detached worker: runs a queue of sweep runs on this machine, N at a time.

Started by `llada sweep launch --executor local`; each run is a child process whose pid is recorded in the run's
job.json, so `llada sweep status` knows it from the run directory alone. On Linux the worker imports the training
stack (torch, Lightning: ~5 s of a tiny run's ~7 s) once and forks each run from itself, which then runs exactly what
`python -m llada_lightning.sweep.job config.yaml` runs (a fresh interpreter per run elsewhere, or with
LLADA_WORKER_FORK=0). The worker itself never runs a torch operation, so each child starts with torch's thread
pools and generators untouched, as a fresh process would. Right before starting a run the worker re-reads
its job.json under the sweep's lock (the one `llada sweep cancel` holds): a run cancelled since the launch, or
taken over by a later launch (another job id), or whose job.json is gone, is skipped, never started.

A WSD branch (an entry with `after: {"trunk": dir, "step": s}`) starts once its trunk has saved its checkpoint
at step s (the trunk may still be running); if the trunk fails, is cancelled, or ends without that checkpoint,
the branch is marked failed with the reason and never started.
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
from llada_lightning.sweep.state import LOCK, file_lock, run_status
from llada_lightning.sweep.trunks import trunk_failure


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


def dependency(run: dict[str, Any]) -> tuple[str, str]:
    """("ready", ""), ("wait", "") or ("failed", reason) for a queued run that may wait for a WSD trunk."""
    after = run.get("after")
    if not after:
        return "ready", ""
    run_dir = Path(run["run_dir"])
    trunk_checkpoint = rundir.branch_checkpoint(after["trunk"], after["step"])
    if rundir.checkpoint_exists(trunk_checkpoint) or rundir.checkpoint_exists(rundir.last_checkpoint(run_dir)):
        return "ready", ""
    state = run_status(Path(after["trunk"]))
    if state.state in ("queued", "running", "preempted", "unknown"):
        return "wait", ""
    reason = trunk_failure(run_dir, state.state, state.detail)
    return ("failed", reason) if reason else ("failed", f"its trunk {Path(after['trunk']).name} is {state.state}")


def fail_unstarted(run: dict[str, Any], reason: str, lock: Path) -> None:
    """Record that a queued run will not start (its trunk failed), unless it was cancelled or taken over."""
    if not lock.parent.is_dir():
        return
    with file_lock(lock):
        if skip_reason(run):
            return
        run_dir = Path(run["run_dir"])
        failure = rundir.RunResult(status="failed", run_dir=str(run_dir), error=reason, time=time.time())
        rundir.write_result(run_dir, failure)
        atomic_write_json(rundir.job_path(run_dir), {**run["record"], "not_started": reason})  # no worker_pid
    print(f"{run['record'].get('name', run['run_dir'])}: not started: {reason}", flush=True)


class ForkedRun:
    """A run forked from the worker, polled like a `subprocess.Popen` (pid, poll, returncode)."""

    def __init__(self, config: Path, log: Path, env: dict[str, str]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _run_child(config, log, env)
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def _run_child(config: Path, log: Path, env: dict[str, str]) -> None:
    """The forked child: output to the run's log, the run's environment, `job.main`, then exit with its status."""
    code = 1
    try:
        # no descriptor of the worker's survives into the run (as close_fds=True): above all not the sweep lock's
        # flock, which the worker holds while it starts a run and which the run would otherwise keep held
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        _redirect_streams()
        os.environ.clear()
        os.environ.update(env)
        from llada_lightning.sweep import job

        code = job.main([str(config)])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()  # as an uncaught exception in `python -m llada_lightning.sweep.job` would
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _redirect_streams() -> None:
    """Point sys.stdout/stderr, and every logging handler that wrote to them, at descriptors 1 and 2 (the
    worker's streams may be objects without a descriptor, e.g. under a test runner's capture)."""
    import logging

    old = {id(sys.stdout): "out", id(sys.stderr): "err"}
    new = {
        "out": open(1, "w", buffering=1, closefd=False),  # noqa: SIM115  (lives as long as the process)
        "err": open(2, "w", buffering=1, closefd=False),  # noqa: SIM115
    }
    sys.stdout, sys.stderr = new["out"], new["err"]
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):  # placeholders have none
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                if id(handler.stream) in old:
                    handler.stream = new[old[id(handler.stream)]]  # not setStream: it flushes the old
                elif getattr(handler.stream, "closed", False):  # a stream gone with the worker's: logging's stderr
                    handler.stream = new["err"]


def fork_enabled() -> bool:
    """Fork runs from a worker that imported the training stack once: Linux only (fork is unsafe on macOS)."""
    return sys.platform.startswith("linux") and os.environ.get("LLADA_WORKER_FORK", "1") != "0"


def preload() -> None:
    """Import what every run imports (torch, Lightning, the training code), without running any torch op."""
    from llada_lightning.sweep import job  # noqa: F401
    from llada_lightning.training import run  # noqa: F401


def start(run: dict[str, Any], env: dict[str, str], fork: bool = False) -> subprocess.Popen | ForkedRun:
    """Start one run's job process (forked from this preloaded worker, or a fresh interpreter) and record its
    pid in its job.json."""
    run_dir = Path(run["run_dir"])
    log = run_dir / rundir.JOB_LOG
    config = rundir.config_path(run_dir)
    proc: subprocess.Popen | ForkedRun
    if fork:
        proc = ForkedRun(config, log, env)
    else:
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "llada_lightning.sweep.job", str(config)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
            )
    record = {**run["record"], "pid": proc.pid, "started": time.time(), "log": str(log)}
    atomic_write_json(rundir.job_path(run_dir), record)
    return proc


def start_unless_cancelled(
    run: dict[str, Any], env: dict[str, str], lock: Path, fork: bool = False
) -> subprocess.Popen | ForkedRun | None:
    """Start `run` unless it was cancelled (or taken over) since the launch; checked and started under `lock`."""
    reason = "its sweep directory is gone"
    if lock.parent.is_dir():
        with file_lock(lock):
            reason = skip_reason(run)
            if not reason:
                return start(run, env, fork)
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
    fork = fork_enabled()
    if fork:
        os.environ.update(env)  # OMP_NUM_THREADS is read once, when torch loads OpenMP: before the import
        try:
            preload()
        except Exception as exc:  # a broken install: let each run's own interpreter report it
            print(f"local worker: preloading the training stack failed ({exc}); starting each run afresh", flush=True)
            fork = False
    pending = list(queue["runs"])
    active: list[subprocess.Popen | ForkedRun] = []
    failures = 0
    while pending or active:
        waiting = []
        for run in pending:  # in queue order (trunks first); a branch waits for its trunk's checkpoint
            state, reason = dependency(run) if len(active) < parallel else ("wait", "")
            if state == "wait":
                waiting.append(run)
            elif state == "failed":
                fail_unstarted(run, reason, lock)
                failures += 1
            else:
                proc = start_unless_cancelled(run, env, lock, fork)
                if proc is not None:
                    active.append(proc)
        pending = waiting
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
