"""`llada sweep launch`: submit only what is neither done nor queued nor running (status, cancel, logs: manage.py).

Every decision reads the run directories (result.json, job.json) and the scheduler, never launcher
memory, so a relaunch after the launcher exited (or crashed) redoes, duplicates and loses nothing. A lock
file per sweep directory serialises launchers started at the same moment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from llada_lightning import rundir
from llada_lightning.config.compose import to_yaml
from llada_lightning.config.errors import ConfigError
from llada_lightning.io import atomic_write_json, atomic_write_text
from llada_lightning.sweep.cluster import EXECUTORS, ClusterConfig, load_cluster
from llada_lightning.sweep.spec import Run, SweepSpec, expand, load_spec
from llada_lightning.sweep.state import (
    ACTIVE,
    LOCK,
    RunStatus,
    file_lock,
    run_status,
    slurm_states,
)
from llada_lightning.sweep.trunks import (
    Trunk,
    needs_trunk,
    plan_trunks,
    prepare_branch,
    prepare_trunk,
    served,
    trunk_failure,
    unshare,
)


@dataclass
class LaunchReport:
    runs: list[Run]
    actions: dict[str, str] = field(default_factory=dict)  # signature -> submit | skip: done | skip: running
    submitted: dict[str, str] = field(default_factory=dict)  # signature -> job id (runs and trunks)
    trunks: list[Trunk] = field(default_factory=list)  # with share_trunks: the WSD trunks of the runs


@contextmanager
def sweep_lock(directory: Path) -> Iterator[None]:
    """Serialise launchers, `cancel` and the local worker's starts on one sweep directory."""
    directory.mkdir(parents=True, exist_ok=True)
    with file_lock(directory / LOCK):
        yield


def statuses(runs: Sequence[Any]) -> dict[str, RunStatus]:
    """Every run's state, querying the scheduler once for all Slurm jobs; a WSD branch that failed because its
    trunk did says so in its `detail`."""
    branches = {r.signature: b for r in runs if (b := rundir.branch_record(r.run_dir))}
    branch_of = {sig: Path(str(b["trunk"])) for sig, b in branches.items()}
    dirs = [r.run_dir for r in runs] + sorted(set(branch_of.values()))
    records = [rundir.read_record(rundir.job_path(d)) or {} for d in dirs]
    ids = [str(j["job_id"]) for j in records if j.get("executor") == "slurm" and j.get("job_id")]
    slurm = slurm_states(ids)
    out = {r.signature: run_status(r.run_dir, slurm) for r in runs}
    trunk_states = {d: run_status(d, slurm) for d in set(branch_of.values())}
    for run in runs:
        trunk_dir = branch_of.get(run.signature)
        state = out[run.signature]
        if trunk_dir is None or state.state in ("done", "running"):
            continue
        reason = trunk_failure(run.run_dir, trunk_states[trunk_dir].state, trunk_states[trunk_dir].detail)
        if reason and state.state in ("failed", "cancelled"):
            state.detail = reason
        elif state.state == "queued" and trunk_states[trunk_dir].state in ACTIVE:
            step = int(branches[run.signature].get("step", 0))
            if not rundir.branch_checkpoint(trunk_dir, step).is_file():  # else it only waits for a free slot
                state.detail = f"waiting for trunk {trunk_dir.name} ({trunk_states[trunk_dir].state})"
    return out


def _config_dict(run: Run) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(run.cfg))  # type: ignore[return-value]


def _prepare(run: Run) -> None:
    run.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rundir.config_path(run.run_dir), to_yaml(run.cfg))
    previous = rundir.read_record(rundir.result_path(run.run_dir))
    if previous is not None and previous.get("status") == "failed":  # keep the evidence, start clean
        os.replace(rundir.result_path(run.run_dir), run.run_dir / f"result.failed.{int(time.time())}.json")


def _submit_slurm(
    runs: list[Run], spec_dir: Path, cluster: ClusterConfig, name: str, after: str = ""
) -> dict[str, tuple[str, str]]:
    """Submit `runs` as job arrays (one per device shape); `after`: a job id they wait for (`afterok`)."""
    import submitit

    out: dict[str, tuple[str, str]] = {}
    groups: dict[tuple[int, int], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.cfg.train.devices, run.cfg.train.num_nodes), []).append(run)
    for (devices, nodes), members in groups.items():
        executor = submitit.AutoExecutor(folder=spec_dir / ".submitit" / "%j", cluster="slurm")
        extra: dict[str, Any] = {"open_mode": "append", **cluster.sbatch}  # requeued segments append to the log
        if after:  # a WSD branch starts once its trunk has finished; a failed trunk cancels it (not left pending)
            extra.update(dependency=f"afterok:{after}", kill_on_invalid_dep="yes")
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
            atomic_write_json(rundir.job_path(run.run_dir), record)
    return out


def _submit_local(
    runs: list[Run], spec_dir: Path, cluster: ClusterConfig, after: dict[str, dict[str, Any]] | None = None
) -> tuple[dict[str, tuple[str, str]], subprocess.Popen]:
    """Queue `runs` on a detached worker; `after` maps a branch's signature to its trunk (`{"trunk", "step"}`):
    the worker starts it once the trunk's checkpoint at that step exists."""
    after = after or {}
    queue_dir = spec_dir / ".local"
    queue_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.time():.6f}"
    queue_file = queue_dir / f"queue-{stamp}.json"
    threads = cluster.torch_threads or max(1, (os.cpu_count() or 1) // cluster.parallel)
    record = {"executor": "local", "submitted": time.time()}
    payload = {
        "lock": str((spec_dir / LOCK).resolve()),  # held while checking for a cancel, then starting a run
        "parallel": cluster.parallel,
        "torch_threads": threads,
        "runs": [
            {
                "run_dir": str(r.run_dir),
                "record": {**record, "job_id": f"local-{stamp}", "name": r.name},
                **({"after": after[r.signature]} if r.signature in after else {}),
            }
            for r in runs
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
            "log": str(run.run_dir / rundir.JOB_LOG),
        }
        atomic_write_json(rundir.job_path(run.run_dir), job)
        out[run.signature] = (job["job_id"], job["log"])
    return out, worker


def _run_debug(runs: list[Run]) -> dict[str, tuple[str, str]]:
    """Run each in this process, in order (trunks first); a branch whose trunk failed is marked failed."""
    from llada_lightning.sweep.job import run_job

    out = {}
    for run in runs:
        record = {"executor": "debug", "job_id": "debug", "name": run.name, "submitted": time.time()}
        atomic_write_json(rundir.job_path(run.run_dir), record)
        trunk = rundir.branch_record(run.run_dir)
        if trunk:
            state = run_status(Path(str(trunk["trunk"])))
            reason = trunk_failure(run.run_dir, state.state, state.detail)  # the trunk ran before it, here
            if reason:
                failure = rundir.RunResult(status="failed", run_dir=str(run.run_dir), error=reason, time=time.time())
                rundir.write_result(run.run_dir, failure)
                print(f"{run.name}: not started: {reason}", file=sys.stderr)
                out[run.signature] = ("debug", "")
                continue
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
    share_trunks: bool = False,
) -> LaunchReport:
    """Submit the runs of a sweep that are neither finished nor queued/running; print what was done.

    With `share_trunks` (or the spec's `share_trunks: true`), WSD runs that differ only in their budget branch off
    one shared trunk (sweep/trunks.py): a trunk is submitted when a branch still needs it, and each such branch
    waits for it (a Slurm `afterok` dependency; the local worker's ordering).
    """
    out = out or sys.stdout
    spec = load_spec(spec_path, overrides)
    cluster = load_cluster(spec.cluster, list(overrides))
    if executor:
        if executor not in EXECUTORS:
            raise ConfigError(f"--executor {executor!r} is not one of: {', '.join(EXECUTORS)}")
        cluster.executor = executor
    runs = expand(spec, [o for o in overrides if not o.startswith("cluster.")])
    sharing = share_trunks or spec.share_trunks
    trunks = plan_trunks(runs, spec.directory, spec.trunk_singletons) if sharing else []
    report = LaunchReport(runs=runs, trunks=trunks)
    worker: subprocess.Popen | None = None
    with sweep_lock(spec.directory):
        states = statuses([*runs, *(t.run for t in trunks)])
        report.actions = plan(runs, states)
        todo = [r for r in runs if report.actions[r.signature].startswith("submit")]
        trunk_todo, waits, alone = _plan_trunks(trunks, {r.signature for r in todo}, states, report.actions)
        if dry_run:
            print_plan([*(t.run for t in trunks), *runs], report.actions, out, trunks)
            for line in fit_warnings([*(t.run for t in trunks), *runs], report.actions, cluster):
                print(line, file=out)
            return report
        branch_of = {b.run.signature: (t, b) for t in trunks for b in t.branches}
        for run in todo:
            _prepare(run)
            if run.signature in branch_of and run.signature not in alone:
                prepare_branch(branch_of[run.signature][1], branch_of[run.signature][0])
            else:
                unshare(run)
        for trunk in trunk_todo:
            _prepare(trunk.run)
            prepare_trunk(trunk)
        jobs = [t.run for t in trunk_todo] + todo  # trunks first: the local worker and debug run them in order
        if jobs:
            if cluster.executor == "slurm":
                submitted = _submit_slurm_with_trunks(jobs, trunk_todo, waits, states, spec, cluster)
            elif cluster.executor == "local":
                after = {sig: {"trunk": str(t.run.run_dir), "step": b.step} for sig, (t, b) in waits.items()}
                submitted, worker = _submit_local(jobs, spec.directory, cluster, after)
            else:
                submitted = {}
            report.submitted = {k: v[0] for k, v in submitted.items()}
    if jobs and cluster.executor == "debug":
        report.submitted = {k: v[0] for k, v in _run_debug(jobs).items()}
    if wait and jobs and cluster.executor == "local":
        assert worker is not None
        worker.wait()  # every run's process has exited (not only written its result)
    skipped = len(runs) - len(todo)
    shared = f", {len(trunk_todo)} shared trunk(s)" if trunk_todo else ""
    print(
        f"sweep {spec.name}: {len(runs)} runs, submitted {len(todo)} ({cluster.executor}){shared}, skipped {skipped}",
        file=out,
    )
    return report


def _plan_trunks(
    trunks: list[Trunk], todo: set[str], states: dict[str, RunStatus], actions: dict[str, str]
) -> tuple[list[Trunk], dict[str, tuple[Trunk, Any]], set[str]]:
    """Which trunks to submit (a branch to submit still needs it, and it is not active), which branches wait for
    their trunk (signature -> (trunk, branch)), and which train on their own (their trunk has passed their step
    without a checkpoint there, or is running without it). Records each trunk's action."""
    submit: list[Trunk] = []
    waits: dict[str, tuple[Trunk, Any]] = {}
    alone: set[str] = set()
    for trunk in trunks:
        sig = trunk.run.signature
        needing = [b for b in trunk.branches if b.run.signature in todo and needs_trunk(b, trunk)]
        state = states[sig].state
        ok = served(trunk, needing, state in ACTIVE) if needing else []
        alone |= {b.run.signature for b in needing if b not in ok}
        if not ok:
            actions[sig] = f"skip: {'done' if state == 'done' else 'not needed'}"
            continue
        if state in ACTIVE:
            actions[sig] = f"skip: {state}"
        elif state == "done":
            actions[sig] = f"submit (extend to {trunk.run.steps} steps)"
            submit.append(trunk)
        else:
            actions[sig] = "submit" if state == "pending" else f"submit ({state})"
            submit.append(trunk)
        waits.update({b.run.signature: (trunk, b) for b in ok})
    return submit, waits, alone


def _submit_slurm_with_trunks(
    jobs: list[Run],
    trunk_todo: list[Trunk],
    waits: dict[str, tuple[Trunk, Any]],
    states: dict[str, RunStatus],
    spec: SweepSpec,
    cluster: ClusterConfig,
) -> dict[str, tuple[str, str]]:
    """Trunks first, then each trunk's waiting branches as an array that depends on it, then the rest."""
    submitted: dict[str, tuple[str, str]] = {}
    trunk_sigs = {t.run.signature for t in trunk_todo}
    if trunk_todo:
        submitted.update(_submit_slurm([t.run for t in trunk_todo], spec.directory, cluster, spec.name))
    groups: dict[str, list[Run]] = {}
    for run in jobs:
        if run.signature in trunk_sigs:
            continue
        after = ""
        if run.signature in waits:
            trunk = waits[run.signature][0]
            sig = trunk.run.signature
            job_id = submitted[sig][0] if sig in submitted else states[sig].job_id
            after = job_id if job_id[:1].isdigit() else ""  # a trunk running elsewhere: its checkpoint may exist
        groups.setdefault(after, []).append(run)
    for after, members in groups.items():
        submitted.update(_submit_slurm(members, spec.directory, cluster, spec.name, after=after))
    return submitted


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


def fit_warnings(runs: Sequence[Run], actions: dict[str, str], cluster: ClusterConfig) -> list[str]:
    """One line per run to submit whose per-GPU memory estimate (llada_lightning/planning) exceeds the cluster's
    `gpu_memory_gb`; none without that figure."""
    if cluster.gpu_memory_gb is None:
        return []
    from llada_lightning.planning.memory import GB
    from llada_lightning.planning.proposal import fit_warning

    lines = []
    for run in runs:
        if actions[run.signature].startswith("submit"):
            line = fit_warning(run.cfg, cluster.gpu_memory_gb * GB, f"{run.name} ({run.signature})")
            if line:
                lines.append(line)
    return lines


def print_plan(runs: Sequence[Run], actions: dict[str, str], out: Any, trunks: Sequence[Trunk] = ()) -> None:
    """One row per run (and trunk) with its steps, tokens, compute and action; then the totals."""
    print(
        f"{'name':<28} {'signature':<11} {'steps':>7} {'tokens':>11} {'FLOPs(6N)':>10} {'FLOPs(full)':>11}  action",
        file=out,
    )
    trunk_sigs = {t.run.signature for t in trunks}
    total = {"6N": 0.0, "full": 0.0}
    todo = {"6N": 0.0, "full": 0.0}
    for run in runs:
        f6, ff = run.flops("6N"), run.flops("full")
        if run.signature not in trunk_sigs:  # the totals count what independent runs would cost
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
    n = sum(a.startswith("submit") for sig, a in actions.items() if sig not in trunk_sigs)
    print(
        f"total compute: {total['6N']:.3g} FLOPs (6N), {total['full']:.3g} (full); "
        f"to submit: {n} runs, {todo['6N']:.3g} (6N), {todo['full']:.3g} (full)",
        file=out,
    )
    if trunks:
        shared = {c: _shared_cost(trunks, runs, c) for c in ("6N", "full")}
        branches = sum(len(t.branches) for t in trunks)
        print(
            f"shared trunks: {len(trunks)} trunk(s) for {branches} runs; with them the sweep costs "
            f"{shared['6N']:.3g} FLOPs (6N), {shared['full']:.3g} (full), "
            f"{shared['6N'] / max(total['6N'], 1e-300):.0%} of the independent runs'",
            file=out,
        )


def _shared_cost(trunks: Sequence[Trunk], runs: Sequence[Run], convention: str) -> float:
    """The whole sweep's compute with shared trunks: each trunk once, each branch's decay, every other run."""
    trunk_sigs = {t.run.signature for t in trunks}
    decay = {b.run.signature: b.run.flops(convention) * (1 - b.step / b.run.steps) for t in trunks for b in t.branches}
    cost = sum(t.run.flops(convention) for t in trunks)
    for run in runs:
        if run.signature not in trunk_sigs:
            cost += decay.get(run.signature, run.flops(convention))
    return cost
