"""WSD shared trunks in a sweep: runs that differ only in their budget train their stable phase once.

With `share_trunks: true` (or `llada sweep launch SPEC --share-trunks`), the sweep's runs are grouped by their
config without its duration (`train.flops_budget`, `train.max_steps`). A group of two or more WSD runs gets one
trunk, `<sweep>/.trunks/<signature>/`: the same config at a constant LR (after the same warmup, in steps) for
as many steps as the latest branch step, saving a full checkpoint at every member's branch step. Each member keeps
its own run directory, signature and `result.json`; it starts from the trunk's checkpoint at its branch step and
runs its own decay (Hägele et al. 2024, arXiv 2405.18392, Sec. 3; OLMo-core's WSD-S ladder). A run alone in its
group trains on its own. Trunk directories start with a dot, so `collect` and the sweep's listings of runs skip
them; `llada sweep status` lists them separately.

The trunk's directory name hashes its config and its branch steps: adding a budget to the sweep later (a new
branch step) starts a new trunk rather than finding a finished one without the checkpoint it needs.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llada_lightning import rundir
from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import RunConfig
from llada_lightning.config.signature import signature
from llada_lightning.sweep.spec import Run, readable_name
from llada_lightning.training.lr_schedule import branch_step, warmup_steps

TRUNKS = ".trunks"  # <sweep dir>/.trunks/<signature>/: one directory per trunk


@dataclass
class Branch:
    run: Run
    step: int  # the trunk step its decay starts from


@dataclass
class Trunk:
    run: Run  # the trunk's own run: constant LR for `run.steps` steps, in <sweep>/.trunks/<signature>
    branches: list[Branch] = field(default_factory=list)

    @property
    def steps(self) -> list[int]:
        return sorted({b.step for b in self.branches})


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


def plan_trunks(runs: Sequence[Run], directory: Path) -> list[Trunk]:
    """The trunks of a sweep's WSD runs (groups of two or more that differ only in duration), in the runs' order.
    Runs of another schedule (an ablation against cosine, say) train on their own."""
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
        groups.setdefault(signature(_without_duration(run.cfg), 64), []).append(run)
    trunks = []
    for members in groups.values():
        if len(members) < 2:
            continue  # nothing to share: trains on its own
        branches = [Branch(r, branch_step(r.steps, r.cfg.train.decay_fraction)) for r in members]
        for b in branches:
            warmup = warmup_steps(b.run.steps, 0.0, b.run.cfg.train.warmup_min_steps)
            if b.step < warmup:
                raise ConfigError(
                    f"share_trunks: run {b.run.name} starts its decay at step {b.step}, inside its warmup of "
                    f"{warmup} steps; lower train.warmup_min_steps or raise the smallest budget"
                )
        trunks.append(_trunk(branches, directory))
    return trunks


def _trunk(branches: list[Branch], directory: Path) -> Trunk:
    first = branches[0].run
    cfg = _without_duration(first.cfg)
    cfg.train.lr_schedule = "constant"  # = WSD before its decay: the same warmup, then the peak LR
    steps = sorted({b.step for b in branches})
    cfg.train.max_steps = steps[-1]
    key = f"{signature(cfg, 64)}|{','.join(map(str, steps))}"
    sig = hashlib.sha256(key.encode()).hexdigest()[:10]
    run_dir = directory / TRUNKS / sig
    cfg.run_dir = str(run_dir.resolve())
    varied = {k: v for k, v in first.assignment.items() if k not in ("train.flops_budget", "train.max_steps")}
    name = f"trunk-{readable_name(varied, cfg)}"
    run = Run(name=name, overrides=[], cfg=cfg, signature=sig, run_dir=run_dir, assignment=varied)
    return Trunk(run=run, branches=branches)


def needs_trunk(branch: Branch, trunk: Trunk) -> bool:
    """A branch that has not started yet (no checkpoint of its own) needs its trunk's checkpoint."""
    started = rundir.last_checkpoint(branch.run.run_dir).is_file()
    return not started and not rundir.branch_checkpoint(trunk.run.run_dir, branch.step).is_file()


def prepare_trunk(trunk: Trunk) -> None:
    """Write the trunk's record (where it saves branch checkpoints) before it is submitted."""
    trunk.run.run_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_trunk_record(trunk.run.run_dir, trunk.steps)


def prepare_branch(branch: Branch, trunk: Trunk) -> None:
    """A branch that has not started records its trunk; one already started keeps what it started from."""
    if rundir.last_checkpoint(branch.run.run_dir).is_file():
        return
    rundir.write_branch_record(branch.run.run_dir, trunk.run.run_dir, branch.step, trunk.steps)


def unshare(run: Run) -> None:
    """A run launched without sharing trains on its own: drop a branch record it has not started from."""
    path = rundir.branch_path(run.run_dir)
    if path.is_file() and not rundir.last_checkpoint(run.run_dir).is_file():
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
    if not record or rundir.last_checkpoint(run_dir).is_file():
        return ""
    if rundir.branch_checkpoint(record["trunk"], record["step"]).is_file():
        return ""
    name = Path(str(record["trunk"])).name
    if trunk_state in ("failed", "cancelled"):
        return f"its trunk {name} {trunk_state}" + (f": {trunk_detail}" if trunk_detail else "")
    if trunk_state == "done":
        return f"its trunk {name} finished without a checkpoint at step {record['step']}"
    return ""
