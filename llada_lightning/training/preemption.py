"""Preemption and timeout: a signal sets a flag; the next step boundary saves a checkpoint, then requeues.

One owner of requeue: this callback. Inside a Slurm job it replaces submitit's USR2 handler (which would
requeue from inside the signal handler, in the middle of a step) and Lightning's own SLURM auto-requeue is
switched off (`SLURMEnvironment(auto_requeue=False)` in `training/run.py`). Only the training loop knows
where a step ends, so only it can save a checkpoint that resumes with no repeated or skipped batch.

- SIGUSR2 (submitit asks Slurm for it `signal_delay_s` before the time limit, and preemption can send it):
  save at the next step boundary, `scontrol requeue` this job (at most `LLADA_MAX_REQUEUES` times), stop.
- SIGTERM (preemption with PreemptMode=REQUEUE, `scontrol requeue`, `scancel`): save at the next step
  boundary if time allows and stop; Slurm itself requeues a preempted job, and a cancelled one stays down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from llada_lightning.training.checkpoint import AtomicCheckpoint


def slurm_job_id() -> str | None:
    """This job's id as scontrol knows it (`<array>_<task>` for array tasks)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def requeue_self() -> str:
    """Ask Slurm to requeue this job; returns what happened (for the log)."""
    job = slurm_job_id()
    if job is None:
        return "not a Slurm job: stopping without requeue"
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    limit = int(os.environ.get("LLADA_MAX_REQUEUES", "20"))
    if restarts >= limit:
        return f"requeued {restarts} times already (LLADA_MAX_REQUEUES={limit}): not requeuing"
    proc = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
    if proc.returncode:
        return f"scontrol requeue {job} failed: {proc.stderr.strip()}"
    return f"requeued Slurm job {job}"


class Preempted(Exception):
    """Raised at a step boundary after the checkpoint is saved: ends `fit` at once (no validation)."""


class PreemptionHandler(Callback):
    """Turns SIGUSR2/SIGTERM into a checkpoint at the next optimizer-step boundary (then requeue/stop)."""

    def __init__(self, checkpoint: AtomicCheckpoint) -> None:
        self.checkpoint = checkpoint
        self.signal_received: int | None = None
        self.stopped = False
        self.message = ""
        self._previous: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signal_received = signum  # only a flag: all work happens at the next step boundary

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGUSR2, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning registered its own SIGTERM notifier at fit start (it would raise SIGTERMException in the
        # middle of a step): take the signals back, so this callback stays their only owner.
        if self._previous and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGUSR2, signal.SIGTERM):
                signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # not a step boundary
        flag = self.signal_received is not None
        if trainer.world_size > 1:  # every rank must agree on the step at which it saves
            flag = trainer.strategy.reduce_boolean_decision(flag, all=False)
        if not flag:
            return
        self.checkpoint.save(trainer)
        signum = self.signal_received
        if trainer.is_global_zero:
            if signum == signal.SIGUSR2:
                self.message = requeue_self()
            else:
                self.message = "stopped on SIGTERM"
            print(f"preemption: checkpoint saved at step {trainer.global_step}; {self.message}", flush=True)
        self.stopped = True
        raise Preempted(self.message)
