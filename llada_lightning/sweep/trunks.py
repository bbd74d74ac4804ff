"""WSD shared trunks in a sweep: runs that differ only in their budget train their stable phase once.

With `share_trunks: true` (or `llada sweep launch SPEC --share-trunks`), the sweep's runs are grouped by their
config without its duration (`train.flops_budget`, `train.max_steps`). A group of two or more WSD runs gets one
trunk, `<sweep>/.trunks/<signature>/`: the same config at a constant LR (after the same warmup, in steps) for
as many steps as the latest branch step, saving a full checkpoint at every member's branch step. Each member keeps
its own run directory, signature and `result.json`; it starts from the trunk's checkpoint at its branch step and
runs its own decay (Hägele et al. 2024, arXiv 2405.18392, Sec. 3; OLMo-core's WSD-S ladder). A run alone in its
group trains on its own. Trunk directories start with a dot, so `collect` and the sweep's listings of runs skip
them; `llada sweep status` lists them separately.

A trunk's directory name hashes its config without its duration, so a budget added later (a study's next wave,
an edited grid) finds the same trunk: its record gains the new branch step and, if the trunk has not passed that
step, the trunk is extended (resumed at constant LR to the new last branch step; the constant schedule does not
depend on the run's length). A branch whose step the trunk has already passed without saving a checkpoint there
(a smaller budget added later) trains on its own, from scratch.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llada_lightning import rundir
from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import RunConfig
from llada_lightning.config.signature import signature
from llada_lightning.sweep.spec import Run, readable_name
from llada_lightning.training.lr_schedule import branch_step

TRUNKS = ".trunks"  # <sweep dir>/.trunks/<signature>/: one directory per trunk


@dataclass
class Branch:
    run: Run
    step: int  # the trunk step its decay starts from


@dataclass
class Trunk:
    run: Run  # the trunk's own run: constant LR for `run.steps` steps, in <sweep>/.trunks/<signature>
    branches: list[Branch] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)  # its branch steps: these branches' and those recorded before


def _without_duration(cfg: RunConfig) -> RunConfig:
    out = copy.deepcopy(cfg)
    out.train.flops_budget = None
    out.train.max_steps = None
    out.run_dir = None
    return out


def _check_warmup(run: Run) -> None:
    if run.cfg.train.warmup_fraction != 0:
        raise ConfigError(
            f"share_trunks: run {run.name} warms up for a fraction of its own steps (train.warmup_fraction="
            f"{run.cfg.train.warmup_fraction:g}), so budgets would not share a trunk; fix warmup in steps: "
            "train.warmup_fraction=0 train.warmup_min_steps=<steps>"
        )


def plan_trunks(runs: Sequence[Run], directory: Path, singletons: bool = False) -> list[Trunk]:
    """The trunks of a sweep's WSD runs (groups of two or more that differ only in duration), in the runs' order.
    Runs of another schedule (an ablation against cosine, say) train on their own. With `singletons`, a run alone
    in its group is a trunk and a branch as well: one more process, the same compute, and a trunk that a budget
    added later (a study's next wave) extends instead of training its stable phase again."""
    wsd = [r for r in runs if r.cfg.train.lr_schedule == "wsd"]
    if runs and not wsd:
        raise ConfigError(
            f"share_trunks needs train.lr_schedule=wsd, but every run uses {runs[0].cfg.train.lr_schedule}; "
            "set train.lr_schedule=wsd in the spec's base, or drop share_trunks"
        )
    for run in wsd:
        _check_warmup(run)
    groups: dict[str, list[Run]] = {}
    for run in wsd:
        # a run shorter than its warmup has it cut to its own length: its LR differs from the trunk's, so it trains
        # on its own; every other run warms up for exactly warmup_min_steps, like its trunk
        if run.steps >= run.cfg.train.warmup_min_steps:
            groups.setdefault(signature(_without_duration(run.cfg), 64), []).append(run)
    trunks = []
    for members in groups.values():
        if len(members) < 2 and not singletons:
            continue  # nothing to share: trains on its own
        branches = [Branch(r, branch_step(r.steps, r.cfg.train.decay_fraction)) for r in members]
        trunks.append(_trunk(branches, directory))
    return trunks


def _trunk(branches: list[Branch], directory: Path) -> Trunk:
    first = branches[0].run
    cfg = _without_duration(first.cfg)
    cfg.train.lr_schedule = "constant"  # = WSD before its decay: the same warmup, then the peak LR
    sig = signature(cfg)
    run_dir = directory / TRUNKS / sig
    recorded = (rundir.trunk_record(run_dir) or {}).get("branch_steps", [])
    steps = sorted({b.step for b in branches} | {int(x) for x in recorded})
    # at least its warmup: a trunk cut shorter would warm up faster than its branches (their decay may start inside
    # the warmup: both then follow the same warmup until the branch step)
    cfg.train.max_steps = max(steps[-1], cfg.train.warmup_min_steps)
    cfg.run_dir = str(run_dir.resolve())
    varied = {k: v for k, v in first.assignment.items() if k not in ("train.flops_budget", "train.max_steps")}
    name = f"trunk-{readable_name(varied, cfg)}"
    run = Run(name=name, overrides=[], cfg=cfg, signature=sig, run_dir=run_dir, assignment=varied)
    return Trunk(run=run, branches=branches, steps=steps)


def trunk_progress(trunk_dir: Path) -> int:
    """The step a trunk that is neither queued nor running has reached: its result's, else its checkpoint's."""
    result = rundir.read_record(rundir.result_path(trunk_dir)) or {}
    if result.get("status") == "done" and isinstance(result.get("steps"), int):
        return int(result["steps"])
    last = rundir.last_checkpoint(trunk_dir)
    if not rundir.checkpoint_exists(last):
        return 0
    import torch  # only for a trunk interrupted mid-way whose plan changed: its exact step is in the checkpoint

    try:
        return int(torch.load(rundir.checkpoint_file(last), map_location="cpu", weights_only=False)["global_step"])
    except Exception:  # unreadable: the trunk fails on it and says so; nothing here depends on the step
        return 0


def served(trunk: Trunk, needing: list[Branch], active: bool) -> list[Branch]:
    """The branches among `needing` that the trunk will save a checkpoint for: an active trunk only at the steps
    it was launched with; otherwise every step it has not passed yet (it resumes, or is extended, to reach it)."""
    if active:
        launched = {int(x) for x in (rundir.trunk_record(trunk.run.run_dir) or {}).get("branch_steps", [])}
        return [b for b in needing if b.step in launched]
    progress = trunk_progress(trunk.run.run_dir)
    return [b for b in needing if b.step >= progress]


def needs_trunk(branch: Branch, trunk: Trunk) -> bool:
    """A branch that has not started yet (no checkpoint of its own) needs its trunk's checkpoint."""
    started = rundir.checkpoint_exists(rundir.last_checkpoint(branch.run.run_dir))
    return not started and not rundir.checkpoint_exists(rundir.branch_checkpoint(trunk.run.run_dir, branch.step))


def prepare_trunk(trunk: Trunk) -> None:
    """Write the trunk's record (where it saves branch checkpoints) before it is submitted; a finished trunk
    that must reach a later branch step is reopened (its result set aside), so it resumes to that step."""
    trunk.run.run_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_trunk_record(trunk.run.run_dir, trunk.steps)
    result = rundir.read_record(rundir.result_path(trunk.run.run_dir)) or {}
    if result.get("status") == "done" and int(result.get("steps", 0)) < trunk.run.steps:
        os.replace(rundir.result_path(trunk.run.run_dir), trunk.run.run_dir / f"result.{result['steps']}-steps.json")


def prepare_branch(branch: Branch, trunk: Trunk) -> None:
    """A branch that has not started records its trunk; one already started keeps what it started from."""
    if rundir.checkpoint_exists(rundir.last_checkpoint(branch.run.run_dir)):
        return
    rundir.write_branch_record(branch.run.run_dir, trunk.run.run_dir, branch.step, trunk.steps)


def unshare(run: Run) -> None:
    """A run launched without sharing trains on its own: drop a branch record it has not started from."""
    path = rundir.branch_path(run.run_dir)
    if path.is_file() and not rundir.checkpoint_exists(rundir.last_checkpoint(run.run_dir)):
        path.unlink()


def trunk_dirs(directory: Path) -> list[Path]:
    """The trunk directories of a sweep directory (those holding a trunk record)."""
    root = directory / TRUNKS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and rundir.trunk_path(p).is_file())


def trunk_failure(run_dir: Path, trunk_state: str, trunk_detail: str) -> str:
    """Why a branch in `run_dir` cannot start, given its trunk's state ("" if it still may)."""
    record = rundir.branch_record(run_dir) or {}
    if not record or rundir.checkpoint_exists(rundir.last_checkpoint(run_dir)):
        return ""
    if rundir.checkpoint_exists(rundir.branch_checkpoint(record["trunk"], record["step"])):
        return ""
    name = Path(str(record["trunk"])).name
    if trunk_state in ("failed", "cancelled"):
        return f"its trunk {name} {trunk_state}" + (f": {trunk_detail}" if trunk_detail else "")
    if trunk_state == "done":
        return f"its trunk {name} finished without a checkpoint at step {record['step']}"
    return ""
