"""`llada sweep status|cancel|logs`: every run of a sweep (the spec's, others found in its directory, its WSD
trunks) with its state, read from the run directories and the scheduler; cancelling the active ones; a run's log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llada_lightning import rundir
from llada_lightning.config.errors import ConfigError
from llada_lightning.io import atomic_write_json
from llada_lightning.sweep.launch import statuses, sweep_lock
from llada_lightning.sweep.spec import SweepSpec, expand, load_spec
from llada_lightning.sweep.state import ACTIVE, RunStatus, pid_alive
from llada_lightning.sweep.trunks import trunk_dirs


@dataclass
class SweepRun:
    """A run as `status` and `cancel` list it: from the spec's expansion, or found in the sweep directory."""

    name: str
    signature: str
    run_dir: Path
    steps: int | None
    in_spec: bool = True  # False: launched with other overrides than the ones given now
    trunk: bool = False  # a WSD shared trunk (in <sweep>/.trunks/), not a run of its own


def _run_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that reach the runs' configs (not `cluster.*`)."""
    return [o for o in overrides if not o.startswith("cluster.")]


def _run_steps(run_dir: Path) -> int | None:
    """The total steps of the run whose resolved config is in `run_dir`; None if it cannot be read."""
    from llada_lightning.config.compose import load_run_config
    from llada_lightning.flops import total_steps

    try:
        return total_steps(load_run_config(rundir.config_path(run_dir)))
    except (ConfigError, OSError, ValueError):
        return None


def discover(directory: Path) -> list[SweepRun]:
    """The run directories under a sweep directory (a config.yaml, job.json or result.json), by name, signature."""
    found = []
    for path in directory.iterdir() if directory.is_dir() else []:
        if path.name.startswith(".") or not path.is_dir():
            continue
        if any((path / f).is_file() for f in (rundir.CONFIG, rundir.JOB, rundir.RESULT)):
            job = rundir.read_record(rundir.job_path(path)) or {}
            found.append(SweepRun(str(job.get("name") or path.name), path.name, path, _run_steps(path), False))
    return sorted(found, key=lambda r: (r.name, r.signature))


def sweep_runs(spec: SweepSpec, overrides: Sequence[str] = ()) -> list[SweepRun]:
    """The spec's runs expanded with `overrides`, then every other run found in the sweep directory, then the
    sweep's WSD shared trunks."""
    runs = [SweepRun(r.name, r.signature, r.run_dir, r.steps) for r in expand(spec, _run_overrides(overrides))]
    known = {r.signature for r in runs}
    trunks = []
    for path in trunk_dirs(spec.directory):
        job = rundir.read_record(rundir.job_path(path)) or {}
        trunks.append(SweepRun(str(job.get("name") or path.name), path.name, path, _run_steps(path), trunk=True))
    return runs + [r for r in discover(spec.directory) if r.signature not in known] + trunks


def status_table(spec_path: str, overrides: Sequence[str] = (), out: Any = None) -> dict[str, RunStatus]:
    """Print every run of the sweep (the spec's, and any launched with other overrides) with its state."""
    out = out or sys.stdout
    spec = load_spec(spec_path, overrides)
    runs = sweep_runs(spec, overrides)
    states = statuses(runs)
    print(f"{'name':<28} {'signature':<11} {'state':<10} {'step':>13} {'val loss':>9}  {'job':<14} log", file=out)
    counts: dict[str, int] = {}
    for run in runs:
        s = states[run.signature]
        if not run.trunk:
            counts[s.state] = counts.get(s.state, 0) + 1
        total = s.total if s.total is not None else run.steps
        step = f"{s.step if s.step is not None else '-'}/{total if total is not None else '-'}"
        loss = f"{s.val_loss:.4f}" if isinstance(s.val_loss, (int, float)) else "-"
        print(
            f"{run.name:<28} {run.signature:<11} {s.state:<10} {step:>13} {loss:>9}  {s.job_id or '-':<14} "
            f"{s.log or '-'}",
            file=out,
        )
    print("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())), file=out)
    trunk_states = [states[r.signature].state for r in runs if r.trunk]
    if trunk_states:
        tally = "  ".join(f"{k}: {trunk_states.count(k)}" for k in sorted(set(trunk_states)))
        print(f"shared trunks (in {spec.directory / '.trunks'}, not runs of their own): {tally}", file=out)
    for run in runs:  # why a run failed (or waits), where the record says
        s = states[run.signature]
        if s.detail and s.state in ("failed", "cancelled", "queued") and s.detail != s.state.upper():
            print(f"  {run.name}: {s.state}: {s.detail}", file=out)
    others = sum(not r.in_spec for r in runs)
    if others:
        print(
            f"the last {others} run(s) were found in {spec.directory}, launched with other overrides than these",
            file=out,
        )
    return states


def split_cancel_args(filter_option: str | None, tokens: Sequence[str]) -> tuple[str, list[str]]:
    """`llada sweep cancel` tokens: key=value (and file.yaml) are overrides; one bare word is the filter."""
    overrides = [t for t in tokens if "=" in t or t.endswith((".yaml", ".yml"))]
    filters = ([filter_option] if filter_option is not None else []) + [t for t in tokens if t not in overrides]
    if len(filters) > 1:
        raise ConfigError(
            f"sweep cancel: {len(filters)} filters given ({', '.join(map(repr, filters))}); "
            "give one, as --filter PATTERN (overrides are key=value)"
        )
    return (filters[0] if filters else ""), overrides


def _scancel(job_id: str) -> None:
    """Cancel one Slurm job (or array task)."""
    try:
        subprocess.run(["scancel", job_id], check=False)
    except OSError as exc:
        raise ConfigError(f"cannot run scancel for job {job_id} ({exc}); cancel from a machine with Slurm") from exc


def _cancel_job(run_dir: Path) -> None:
    """Stop one run's job and mark its job.json cancelled: the local worker never starts a cancelled run."""
    job = rundir.read_record(rundir.job_path(run_dir)) or {}
    if job.get("executor") == "slurm":
        _scancel(str(job["job_id"]))
    elif pid_alive(job.get("pid")):
        os.kill(int(job["pid"]), signal.SIGTERM)  # the run saves a checkpoint at its next step and stops
    job["cancelled"] = time.time()
    job.pop("worker_pid", None)
    atomic_write_json(rundir.job_path(run_dir), job)


def cancel(spec_path: str, pattern: str = "", overrides: Sequence[str] = (), out: Any = None) -> list[str]:
    """Cancel the queued and running jobs of the sweep's runs whose name or signature contains `pattern`."""
    out = out or sys.stdout
    spec = load_spec(spec_path, overrides)
    runs = [r for r in sweep_runs(spec, overrides) if pattern in r.name or pattern in r.signature]
    if pattern and not runs:
        where = " ".join([spec_path, *(o for o in overrides if o.partition("=")[0] in ("name", "root"))])
        raise ConfigError(
            f"sweep cancel: no run of sweep {spec.name} has {pattern!r} in its name or signature; "
            f"see the run names with `llada sweep status {where}`"
        )
    cancelled = []
    if spec.directory.is_dir():  # otherwise nothing was ever launched
        with sweep_lock(spec.directory):  # the local worker checks for a cancel under it before starting a run
            states = statuses(runs)
            for run in runs:
                if states[run.signature].state in ACTIVE:
                    _cancel_job(run.run_dir)
                    cancelled.append(run.name)
                    print(f"cancelled {run.name} ({states[run.signature].job_id})", file=out)
    if not cancelled:
        matching = f" matching {pattern!r}" if pattern else ""
        print(f"nothing to cancel: no run{matching} of sweep {spec.name} is queued or running", file=out)
    return cancelled


def find_run(ref: str, root: str = "runs/sweeps") -> Path:
    """A run directory from a path, a signature or a readable name (searched under `root`)."""
    path = Path(ref)
    if (rundir.config_path(path)).is_file():
        return path
    for candidate in sorted(Path(root).glob("*/*")):
        if candidate.name == ref:
            return candidate
        job = rundir.read_record(rundir.job_path(candidate)) or {}
        if job.get("name") == ref:
            return candidate
    raise ConfigError(f"no run {ref!r}: give a run directory, or a signature under {root}")


def logs(ref: str, root: str = "runs/sweeps", lines: int = 40, out: Any = None) -> Path | None:
    out = out or sys.stdout
    run_dir = find_run(ref, root)
    job = rundir.read_record(rundir.job_path(run_dir)) or {}
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
