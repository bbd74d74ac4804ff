"""`llada data prepare --slurm`: the shards of a preparation (prepare.py) as a submitit job array, and how far a
prepared directory is (`llada data status`).

The submitting process plans (plan.json, tokenizer.json) and records the array in slurm.json; each array task
writes its shards with its processes (prepare.run_shards) and the last one to finish writes the manifest; a rerun
while tasks of the last submission are still queued or running submits nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.data import shards
from llada_lightning.data.prepare import (
    LOCK,
    PrepareOptions,
    Report,
    context,
    finalize,
    flock,
    load_context,
    pending,
    plan,
    run_shards,
    shard_done,
)
from llada_lightning.io import atomic_write_json

SLURM_RECORD = "slurm.json"


def run_task(out_dir: str, todo: list[int], workers: int, verify: bool = False) -> dict[str, Any]:
    """One Slurm array task: write the shards `todo`, then the manifest if every shard is done."""
    out = Path(out_dir)
    written, busy, tokens = run_shards(out, todo, workers, verify=verify)
    with flock(out / LOCK, wait=True):
        manifest = finalize(context(out))
    return {"written": written, "busy": busy, "tokens": tokens, "manifest": manifest is not None}


LIVE_STATES = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")


def submitit_parameters(cluster: Any, workers: int) -> dict[str, Any]:
    """submitit parameters of a CPU array task from a cluster config (sweep/cluster.py; configs/cluster/)."""
    extra: dict[str, Any] = dict(cluster.sbatch)
    params: dict[str, Any] = {
        "timeout_min": cluster.time_min,
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": workers,
        "name": "llada-prepare",
        "slurm_array_parallelism": cluster.array_parallelism,
        "slurm_setup": list(cluster.setup),
    }
    if cluster.partition:
        params["slurm_partition"] = cluster.partition
    for key in ("account", "qos", "constraint"):
        if getattr(cluster, key):
            extra[key] = getattr(cluster, key)
    if cluster.mem_gb:
        params["mem_gb"] = cluster.mem_gb
    if extra:
        params["slurm_additional_parameters"] = extra
    return params


def live_jobs(out: Path) -> list[str]:
    """The array tasks of the last submission (slurm.json) that Slurm still has queued or running."""
    record = shards.read_json(out / SLURM_RECORD)
    if not record or record.get("executor") != "slurm":
        return []
    from llada_lightning.sweep.state import slurm_states

    states = slurm_states([str(j) for j in record["job_ids"]])
    return sorted(j for j, s in states.items() if s in LIVE_STATES)


def submit(opts: PrepareOptions, cluster: Any, *, jobs: int | None = None, wait: bool = False,
           echo: Callable[[str], None] = print) -> Report:  # fmt: skip
    """Plan here, then write the shards not done as a submitit job array of at most `jobs` tasks (default: the
    cluster's array_parallelism), each with `opts.workers` processes; the last task to finish writes the manifest.
    `wait` (always with the debug executor) blocks until the tasks end and writes the manifest here."""
    if cluster.executor == "local":
        raise ConfigError("the cluster config runs locally (executor: local); use --workers N on this machine instead")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs {jobs} must be >= 1")
    t0 = time.perf_counter()
    ctx = plan(opts)
    todo = pending(ctx, opts.verify)
    report = Report(ctx.out, len(ctx.plan["units"]), done_before=len(ctx.plan["units"]) - len(todo))
    live = live_jobs(ctx.out) if todo else []
    if live:
        echo(f"{ctx.out}: array tasks {', '.join(live[:4])}{' ...' if len(live) > 4 else ''} are still queued or "
             "running; not submitting again (rerun when they end, or scancel them)")  # fmt: skip
        report.busy = todo
    elif todo:
        import submitit

        n = min(jobs or cluster.array_parallelism, len(todo))
        executor = submitit.AutoExecutor(folder=ctx.out / ".submitit" / "%j", cluster=cluster.executor)
        executor.update_parameters(**submitit_parameters(cluster, opts.workers))
        groups = [todo[t::n] for t in range(n)]
        try:
            array = executor.map_array(run_task, [str(ctx.out)] * n, groups, [opts.workers] * n, [opts.verify] * n)
        except submitit.core.utils.FailedJobError as exc:
            message = " ".join(str(exc).split())[:300]
            raise ConfigError(f"sbatch refused the submission ({message}); fix the cluster options") from exc
        record = {"executor": cluster.executor, "job_ids": [str(j.job_id) for j in array], "shards": todo,
                  "submitted": time.time()}  # fmt: skip
        atomic_write_json(ctx.out / SLURM_RECORD, record)
        job_id = str(array[0].job_id).split("_")[0]
        echo(f"{ctx.out}: submitted {len(todo)} shards as {n} array task(s) of job {job_id} "
             f"({cluster.executor}); logs in {ctx.out / '.submitit'}")  # fmt: skip
        if wait or cluster.executor == "debug":
            for job in array:
                try:
                    result = job.result()
                except Exception as exc:  # the task's own error, as submitit relays it
                    lines = [line for line in str(exc).splitlines() if line.strip()]
                    raise ConfigError(
                        f"array task {job.job_id} failed: {lines[-1].strip() if lines else type(exc).__name__}; "
                        f"see {job.paths.stderr}, fix it and rerun (done shards are kept)"
                    ) from exc
                report.written += result["written"]
                report.busy += result["busy"]
                report.tokens_written += result["tokens"]
    if not live and (not todo or wait or cluster.executor == "debug"):
        with flock(ctx.out / LOCK, wait=True):
            report.manifest = finalize(ctx)
    report.seconds = time.perf_counter() - t0
    return report


def status(out_dir: str) -> dict[str, Any]:
    """How far a prepared directory is: shards done of planned, their tokens, whether the manifest is written."""
    out = Path(out_dir).expanduser().resolve()
    ctx = load_context(out)
    markers = [shard_done(ctx, i) for i in range(len(ctx.plan["units"]))]
    done = [m for m in markers if m is not None]
    return {
        "out_dir": str(out),
        "shards": len(markers),
        "done": len(done),
        "tokens_done": sum(m["n_tokens"] for m in done),
        "manifest": (out / shards.MANIFEST).is_file(),
        "live_jobs": live_jobs(out),
    }
