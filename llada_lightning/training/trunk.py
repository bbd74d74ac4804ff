"""WSD shared trunks: the stable phase trained once, each budget's decay branching off its checkpoint.

A WSD run of T steps holds the peak LR (after warmup) for every step before `branch_step(T)` = T - D, so the
first T - D steps of runs that differ only in T are the same computation: one trunk (constant LR after the
same warmup, in steps) trains them once and saves a full checkpoint at each budget's branch step; each budget's
run directory is seeded with that checkpoint as its `last.ckpt` and resumes normally with its own config
(Hägele et al. 2024, arXiv 2405.18392; OLMo-core's WSD-S model ladder).

    <trunk>/trunk.json                      {"branch_steps": [...]}: where the trunk saves branch checkpoints
    <trunk>/checkpoints/branch-<s>.ckpt     the trunk's full checkpoint at step s (weights, optimizer, data position)
    <branch>/branch.json                    {"trunk": dir, "step": s, "branch_steps": [every branch's s]}

A branch's `result.json` adds two keys (in `flops_convention`):
    flops_independent  what an independent run of that budget costs (its own `flops_6N`/`flops_full`)
    flops_spent        what this budget actually cost: its branch (steps s..T) plus its share of the trunk, each
                       trunk segment between consecutive branch steps split equally among the branches using it;
                       summed over a trunk's branches it is the trunk's compute plus every branch's.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from llada_lightning import rundir
from llada_lightning.config.errors import ConfigError
from llada_lightning.training.checkpoint import remove_checkpoint, replace_checkpoint


def _copy_atomic(src: Path, dst: Path) -> None:
    """Copy the checkpoint `src` (a file, or a sharded directory) to `dst` through a temporary copy moved over it:
    a kill leaves no half-written `dst`."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        remove_checkpoint(tmp)
        if src.is_dir():
            shutil.copytree(src, tmp)
        else:
            shutil.copyfile(src, tmp)
        replace_checkpoint(tmp, dst)
    finally:
        with contextlib.suppress(OSError):
            remove_checkpoint(tmp)


class BranchCheckpoints(Callback):
    """A trunk's callback: save its full checkpoint at every branch step (atomically, once per step)."""

    def __init__(self, run_dir: Path, steps: list[int]) -> None:
        self.run_dir = run_dir
        self.steps = set(steps)

    def _missing(self, step: int) -> bool:
        return step in self.steps and not rundir.checkpoint_exists(rundir.branch_checkpoint(self.run_dir, step))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # resumed from a last.ckpt saved at a branch step whose branch checkpoint a kill prevented: the same state
        last = rundir.last_checkpoint(self.run_dir)
        if trainer.is_global_zero and self._missing(trainer.global_step) and rundir.checkpoint_exists(last):
            _copy_atomic(last, rundir.branch_checkpoint(self.run_dir, trainer.global_step))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if (batch_idx + 1) % trainer.accumulate_grad_batches or not self._missing(step):
            return
        path = rundir.branch_checkpoint(self.run_dir, step)
        tmp = path.with_name(f".{path.name}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        if trainer.is_global_zero:
            remove_checkpoint(tmp)  # a sharded save a kill interrupted: no stale shard may join the new one
        trainer.strategy.barrier("branch_checkpoint_clean")
        trainer.save_checkpoint(tmp, weights_only=False)  # at a step boundary, as last.ckpt: resumable
        if trainer.is_global_zero:
            replace_checkpoint(tmp, path)
        trainer.strategy.barrier("branch_checkpoint")


def callbacks(run_dir: Path) -> list[Callback]:
    """`[BranchCheckpoints]` for a trunk's run directory, else nothing."""
    record = rundir.trunk_record(run_dir)
    if not record:
        return []
    return [BranchCheckpoints(run_dir, [int(s) for s in record.get("branch_steps", [])])]


def seed_branch(run_dir: Path) -> None:
    """A branch that has no `last.ckpt` yet starts from its trunk's checkpoint at its branch step."""
    record = rundir.branch_record(run_dir)
    last = rundir.last_checkpoint(run_dir)
    if not record or last.exists():
        return
    source = rundir.branch_checkpoint(record["trunk"], record["step"])
    if not rundir.checkpoint_exists(source):
        raise ConfigError(
            f"{run_dir} branches off trunk {record['trunk']} at step {record['step']}, but {source} does not exist; "
            "let the trunk reach that step (relaunch the sweep), or delete branch.json to train this run on its own"
        )
    last.parent.mkdir(parents=True, exist_ok=True)
    _copy_atomic(source, last)


def branch_flops(record: dict[str, Any], flops_at: Any, steps: int) -> dict[str, float]:
    """`flops_spent` and `flops_independent` of a branch (see the module docstring); `flops_at(step)` gives the
    cumulative training FLOPs of the first `step` steps (the same for the trunk and every branch before it)."""
    own = int(record["step"])
    shared = sorted(int(s) for s in record.get("branch_steps", [own]))
    spent, previous = 0.0, 0
    for s in sorted(set(shared)):
        if s > own:
            break
        users = sum(b >= s for b in shared)  # the branches that start at or after this trunk segment's end
        spent += (flops_at(s) - flops_at(previous)) / users
        previous = s
    total = flops_at(steps)
    return {"flops_spent": spent + total - flops_at(own), "flops_independent": total}
