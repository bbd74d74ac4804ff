"""`llada sweep launch|status|cancel|logs`: submit only what is neither done nor queued nor running.

Every decision reads the run directories (result.json, job.json) and the scheduler, never launcher
memory, so a relaunch after the launcher exited (or crashed) redoes, duplicates and loses nothing. A lock
file per sweep directory serialises launchers started at the same moment.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from llada_lightning.config.compose import to_yaml
from llada_lightning.config.errors import ConfigError
from llada_lightning.io import atomic_write_json, atomic_write_text
from llada_lightning.sweep.cluster import ClusterConfig, load_cluster
from llada_lightning.sweep.spec import Run, expand, load_spec
from llada_lightning.sweep.state import ACTIVE, JOB, RunStatus, pid_alive, read_record, run_status, slurm_states


@dataclass
class LaunchReport:
    runs: list[Run]
    actions: dict[str, str] = field(default_factory=dict)  # signature -> submit | skip: done | skip: running
    submitted: dict[str, str] = field(default_factory=dict)  # signature -> job id


@contextmanager
def sweep_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".launch.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def statuses(runs: Sequence[Run]) -> dict[str, RunStatus]:
    """Every run's state, querying the scheduler once for all Slurm jobs."""
    records = {r.signature: read_record(r.run_dir, JOB) or {} for r in runs}
    ids = [str(j["job_id"]) for j in records.values() if j.get("executor") == "slurm" and j.get("job_id")]
    slurm = slurm_states(ids)
    return {r.signature: run_status(r.run_dir, slurm) for r in runs}


def _config_dict(run: Run) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(run.cfg))  # type: ignore[return-value]


def _prepare(run: Run) -> None:
    run.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.run_dir / "config.yaml", to_yaml(run.cfg))
    previous = read_record(run.run_dir, "result.json")
    if previous is not None and previous.get("status") == "failed":  # keep the evidence, start clean
        os.replace(run.run_dir / "result.json", run.run_dir / f"result.failed.{int(time.time())}.json")


def _submit_slurm(runs: list[Run], spec_dir: Path, cluster: ClusterConfig, name: str) -> dict[str, tuple[str, str]]:
    import submitit

    out: dict[str, tuple[str, str]] = {}
    groups: dict[tuple[int, int], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.cfg.train.devices, run.cfg.train.num_nodes), []).append(run)
    for (devices, nodes), members in groups.items():
        executor = submitit.AutoExecutor(folder=spec_dir / ".submitit" / "%j", cluster="slurm")
        extra: dict[str, Any] = {"open_mode": "append", **cluster.sbatch}  # requeued segments append to the log
        params: dict[str, Any] = {
            "timeout_min": cluster.time_min,
            "nodes": nodes,
            "tasks_per_node": devices,  # Lightning: ntasks-per-node == devices, tasks started by srun
            "cpus_per_task": cluster.cpus_per_task,
            "name": name,
            "slurm_array_parallelism": cluster.array_parallelism,
            "slurm_signal_delay_s": cluster.signal_delay_s,
            "slurm_setup": [
                *cluster.setup,
                f"export LLADA_MAX_REQUEUES={cluster.max_requeues}",
                *([f"export LLADA_TORCH_THREADS={cluster.torch_threads}"] if cluster.torch_threads else []),
            ],
        }
        if cluster.gpus_per_node:
            params["gpus_per_node"] = cluster.gpus_per_node
        for key in ("partition", "account", "qos", "constraint"):
            value = getattr(cluster, key)
            if value:
                if key in ("partition",):
                    params[f"slurm_{key}"] = value
                else:
                    extra[key] = value
        if cluster.mem_gb:
            params["mem_gb"] = cluster.mem_gb
        if extra:
            params["slurm_additional_parameters"] = extra
        executor.update_parameters(**params)
        from llada_lightning.sweep.job import run_job

        try:
            jobs = executor.map_array(run_job, [_config_dict(r) for r in members])
        except submitit.core.utils.FailedJobError as exc:
            message = " ".join(str(exc).split())[:300]
            raise ConfigError(f"sbatch refused the submission ({message}); fix the cluster config") from exc
        for run, job in zip(members, jobs, strict=True):  # recorded group by group: nothing submitted is lost
            out[run.signature] = (str(job.job_id), str(job.paths.stdout))
            record = {
                "executor": "slurm",
                "job_id": str(job.job_id),
                "name": run.name,
                "log": str(job.paths.stdout),
                "submitted": time.time(),
            }
            atomic_write_json(run.run_dir / JOB, record)
    return out


def _submit_local(
    runs: list[Run], spec_dir: Path, cluster: ClusterConfig
) -> tuple[dict[str, tuple[str, str]], subprocess.Popen]:
    queue_dir = spec_dir / ".local"
    queue_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.time():.6f}"
    queue_file = queue_dir / f"queue-{stamp}.json"
    threads = cluster.torch_threads or max(1, (os.cpu_count() or 1) // cluster.parallel)
    record = {"executor": "local", "submitted": time.time()}
    payload = {
        "parallel": cluster.parallel,
        "torch_threads": threads,
        "runs": [
            {"run_dir": str(r.run_dir), "record": {**record, "job_id": f"local-{stamp}", "name": r.name}} for r in runs
        ],
    }
    atomic_write_text(queue_file, json.dumps(payload))
    log = queue_dir / f"worker-{stamp}.log"
    with open(log, "ab") as fh:
        worker = subprocess.Popen(
            [sys.executable, "-m", "llada_lightning.sweep.local_worker", str(queue_file)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the launcher
        )
    out = {}
    for run in runs:
        job = {
            **record,
            "job_id": f"local-{stamp}",
            "name": run.name,
            "worker_pid": worker.pid,
            "log": str(run.run_dir / "job.log"),
        }
        atomic_write_json(run.run_dir / JOB, job)
        out[run.signature] = (job["job_id"], job["log"])
    return out, worker


def _run_debug(runs: list[Run]) -> dict[str, tuple[str, str]]:
    from llada_lightning.sweep.job import run_job

    out = {}
    for run in runs:
        record = {"executor": "debug", "job_id": "debug", "name": run.name, "submitted": time.time()}
        atomic_write_json(run.run_dir / JOB, record)
        try:
            run_job(_config_dict(run))
        except Exception as exc:  # recorded in result.json by run_job; keep going with the others
            print(f"{run.name}: failed: {exc}", file=sys.stderr)
        out[run.signature] = ("debug", "")
    return out


def plan(runs: Sequence[Run], states: dict[str, RunStatus]) -> dict[str, str]:
    """What launching would do for each run."""
    actions = {}
    for run in runs:
        state = states[run.signature].state
        if state == "done":
            actions[run.signature] = "skip: done"
        elif state in ACTIVE:
            actions[run.signature] = f"skip: {state}"
        else:
            actions[run.signature] = "submit" if state == "pending" else f"submit ({state})"
    return actions


def launch(
    spec_path: str,
    *,
    executor: str | None = None,
    dry_run: bool = False,
    overrides: Sequence[str] = (),
    wait: bool = False,
    out: Any = None,
) -> LaunchReport:
    """Submit the runs of a sweep that are neither finished nor queued/running; print what was done."""
    out = out or sys.stdout
    spec = load_spec(spec_path, overrides)
    cluster = load_cluster(spec.cluster, list(overrides))
    if executor:
        if executor not in ("slurm", "local", "debug"):
            raise ConfigError(f"--executor {executor!r} is not one of: slurm, local, debug")
        cluster.executor = executor
    runs = expand(spec, [o for o in overrides if not o.startswith("cluster.")])
    report = LaunchReport(runs=runs)
    worker: subprocess.Popen | None = None
    with sweep_lock(spec.directory):
        states = statuses(runs)
        report.actions = plan(runs, states)
        todo = [r for r in runs if report.actions[r.signature].startswith("submit")]
        if dry_run:
            print_plan(runs, report.actions, out)
            return report
        for run in todo:
            _prepare(run)
        if todo:
            if cluster.executor == "slurm":
                submitted = _submit_slurm(todo, spec.directory, cluster, spec.name)
            elif cluster.executor == "local":
                submitted, worker = _submit_local(todo, spec.directory, cluster)
            else:
                submitted = {}
            report.submitted = {k: v[0] for k, v in submitted.items()}
    if todo and cluster.executor == "debug":
        report.submitted = {k: v[0] for k, v in _run_debug(todo).items()}
    if wait and todo and cluster.executor == "local":
        assert worker is not None
        worker.wait()  # every run's process has exited (not only written its result)
    skipped = len(runs) - len(todo)
    print(
        f"sweep {spec.name}: {len(runs)} runs, submitted {len(todo)} ({cluster.executor}), skipped {skipped}", file=out
    )
    return report


def wait_for(runs: Sequence[Run], poll_s: float = 1.0, timeout_s: float | None = None) -> dict[str, RunStatus]:
    """Block until no run is queued, running or preempted."""
    start = time.time()
    while True:
        states = statuses(runs)
        if not any(s.state in ("queued", "running", "preempted") for s in states.values()):
            return states
        if timeout_s is not None and time.time() - start > timeout_s:
            return states
        time.sleep(poll_s)


def print_plan(runs: Sequence[Run], actions: dict[str, str], out: Any) -> None:
    print(
        f"{'name':<28} {'signature':<11} {'steps':>7} {'tokens':>11} {'FLOPs(6N)':>10} {'FLOPs(full)':>11}  action",
        file=out,
    )
    total = {"6N": 0.0, "full": 0.0}
    todo = {"6N": 0.0, "full": 0.0}
    for run in runs:
        f6, ff = run.flops("6N"), run.flops("full")
        total["6N"] += f6
        total["full"] += ff
        if actions[run.signature].startswith("submit"):
            todo["6N"] += f6
            todo["full"] += ff
        print(
            f"{run.name:<28} {run.signature:<11} {run.steps:>7} {run.tokens:>11,} {f6:>10.3g} {ff:>11.3g}  "
            f"{actions[run.signature]}",
            file=out,
        )
    n = sum(a.startswith("submit") for a in actions.values())
    print(
        f"total compute: {total['6N']:.3g} FLOPs (6N), {total['full']:.3g} (full); "
        f"to submit: {n} runs, {todo['6N']:.3g} (6N), {todo['full']:.3g} (full)",
        file=out,
    )


def status_table(spec_path: str, overrides: Sequence[str] = (), out: Any = None) -> dict[str, RunStatus]:
    out = out or sys.stdout
    spec = load_spec(spec_path, overrides)
    runs = expand(spec, [o for o in overrides if not o.startswith("cluster.")])
    states = statuses(runs)
    print(f"{'name':<28} {'signature':<11} {'state':<10} {'step':>13} {'val loss':>9}  {'job':<14} log", file=out)
    counts: dict[str, int] = {}
    for run in runs:
        s = states[run.signature]
        counts[s.state] = counts.get(s.state, 0) + 1
        step = f"{s.step if s.step is not None else '-'}/{s.total if s.total is not None else run.steps}"
        loss = f"{s.val_loss:.4f}" if isinstance(s.val_loss, (int, float)) else "-"
        print(
            f"{run.name:<28} {run.signature:<11} {s.state:<10} {step:>13} {loss:>9}  {s.job_id or '-':<14} "
            f"{s.log or '-'}",
            file=out,
        )
    print("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())), file=out)
    return states


def cancel(spec_path: str, pattern: str = "", overrides: Sequence[str] = (), out: Any = None) -> list[str]:
    """Cancel the active jobs of runs whose name or signature contains `pattern`."""
    out = out or sys.stdout
    spec = load_spec(spec_path, overrides)
    runs = [
        r
        for r in expand(spec, [o for o in overrides if not o.startswith("cluster.")])
        if pattern in r.name or pattern in r.signature
    ]
    states = statuses(runs)
    cancelled = []
    for run in runs:
        s = states[run.signature]
        if s.state not in ACTIVE:
            continue
        job = read_record(run.run_dir, JOB) or {}
        if job.get("executor") == "slurm":
            subprocess.run(["scancel", str(job["job_id"])], check=False)
        elif job.get("executor") == "local":
            for key in ("pid",):
                if pid_alive(job.get(key)):
                    os.kill(int(job[key]), signal.SIGTERM)
            job["cancelled"] = time.time()
            job.pop("worker_pid", None)
            atomic_write_json(run.run_dir / JOB, job)
        cancelled.append(run.name)
        print(f"cancelled {run.name} ({s.job_id})", file=out)
    if not cancelled:
        print("nothing to cancel", file=out)
    return cancelled


def find_run(ref: str, root: str = "runs/sweeps") -> Path:
    """A run directory from a path, a signature or a readable name (searched under `root`)."""
    path = Path(ref)
    if (path / "config.yaml").is_file():
        return path
    for candidate in sorted(Path(root).glob("*/*")):
        if candidate.name == ref:
            return candidate
        job = read_record(candidate, JOB) or {}
        if job.get("name") == ref:
            return candidate
    raise ConfigError(f"no run {ref!r}: give a run directory, or a signature under {root}")


def logs(ref: str, root: str = "runs/sweeps", lines: int = 40, out: Any = None) -> Path | None:
    out = out or sys.stdout
    run_dir = find_run(ref, root)
    job = read_record(run_dir, JOB) or {}
    log = Path(str(job.get("log", ""))) if job.get("log") else None
    print(f"run {run_dir}: job {job.get('job_id', '-')}, log {log or '-'}", file=out)
    if log and log.is_file():
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print("\n".join(tail), file=out)
        err = log.with_name(log.name.replace("_log.out", "_log.err"))
        if err != log and err.is_file():
            print(f"--- {err}", file=out)
            print("\n".join(err.read_text(errors="replace").splitlines()[-lines:]), file=out)
    return log
