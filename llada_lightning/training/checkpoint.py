"""Checkpoints that survive SIGKILL: written to a temporary file, then renamed over `last.ckpt`."""

from __future__ import annotations

import contextlib
import errno
import os
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from llada_lightning import rundir
from llada_lightning.config.errors import ConfigError
from llada_lightning.data.tokenizer import first_line

LAST = rundir.LAST_CHECKPOINT
TMP = f".{LAST}.tmp"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def unreadable_checkpoint(path: Path, detail: str) -> ConfigError:
    """The one-line error for a `last.ckpt` that cannot be resumed from; the file itself is left alone."""
    return ConfigError(
        f"{path} is not a readable checkpoint ({detail}); move it away to restart this run from scratch, or restore it"
    )


def check_readable(path: Path) -> None:
    """Raise `unreadable_checkpoint` unless `path` is a whole torch zip archive (cheap: no tensor is read)."""
    try:
        size = path.stat().st_size
        if size == 0:
            detail = "an empty file, 0 bytes"
        elif not zipfile.is_zipfile(path):  # torch checkpoints are zip archives: truncated, or not torch's
            detail = f"{size:,} bytes but no zip directory: truncated or foreign"
        else:
            with zipfile.ZipFile(path) as archive:
                pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
                if pickles:
                    archive.read(pickles[0])  # CRC-checked: the checkpoint's structure is intact
                    return
                detail = "a zip archive without data.pkl: not a torch checkpoint"
    except Exception as exc:  # an unreadable file or a corrupt archive, of whatever kind
        detail = first_line(exc)
    raise unreadable_checkpoint(path, detail)


def save_failed(dirpath: Path, last: Path, exc: OSError) -> OSError:
    """An OSError (same errno) whose message says the save failed, what to do, and that `last` is intact."""
    reason = exc.strerror or first_line(exc)
    fix = "free space there" if exc.errno in _NO_SPACE else "fix the cause"
    kept = f"the previous checkpoint {last.name} is intact" if last.is_file() else "no earlier checkpoint exists"
    return OSError(
        exc.errno, f"cannot save a checkpoint ({reason}); {fix} and rerun the same command ({kept})", str(dirpath)
    )


class AtomicCheckpoint(Callback):
    """Save `<dir>/last.ckpt` every `every_n_steps` optimizer steps and at the end of training.

    Saving happens at a step boundary (after the optimizer step), so a resumed run repeats no batch.
    A kill during the write leaves the previous `last.ckpt` intact; a failed write (disk full) removes its
    temporary file, keeps the previous `last.ckpt` and raises an OSError saying so.
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self._last_saved: int | None = None
        self.save_requested = False  # set from a signal handler; honoured at the next step boundary

    @property
    def last_path(self) -> Path:
        return self.dirpath / LAST

    def save(self, trainer: L.Trainer) -> None:
        """Write the checkpoint to a temporary file and rename it over `last.ckpt` (rank 0 renames)."""
        tmp = self.dirpath / TMP
        try:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(tmp, weights_only=False)
            if trainer.is_global_zero:
                os.replace(tmp, self.last_path)
        except OSError as exc:
            _remove(tmp, trainer)
            raise save_failed(self.dirpath, self.last_path, exc) from exc
        except BaseException:
            _remove(tmp, trainer)
            raise
        trainer.strategy.barrier("atomic_checkpoint")
        self._last_saved = trainer.global_step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_saved = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._last_saved:  # inside a gradient-accumulation window, or already saved
            return
        due = self.every_n_steps > 0 and step % self.every_n_steps == 0
        if due or self.save_requested:
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_saved:
            self.save(trainer)


def _remove(path: Path, trainer: L.Trainer) -> None:
    """Rank 0 deletes its temporary file if it exists; a failure to delete must not hide the original error."""
    if not trainer.is_global_zero:  # only rank 0 writes it: another rank must not delete rank 0's file
        return
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
