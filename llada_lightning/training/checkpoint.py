"""Checkpoints that survive SIGKILL: written to a temporary file, then renamed over `last.ckpt`.

A sharded checkpoint (train.strategy=fsdp, training/strategy.py) is a directory (rundir.SHARDED_META): written to a
temporary directory, then moved into place by `replace_checkpoint`; `read_checkpoint` reads either kind for inference.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import warnings
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
DCP_METADATA = ".metadata"  # torch.distributed.checkpoint's index of the shards (FileSystemWriter, written last)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def unreadable_checkpoint(path: Path, detail: str) -> ConfigError:
    """The one-line error for a `last.ckpt` that cannot be resumed from; the file itself is left alone."""
    return ConfigError(
        f"{path} is not a readable checkpoint ({detail}); move it away to restart this run from scratch, or restore it"
    )


def check_readable(path: Path) -> None:
    """Raise `unreadable_checkpoint` unless `path` is a whole torch zip archive, or a sharded checkpoint directory
    with its shards' `.metadata` and a whole `meta.pt` (cheap: no tensor is read)."""
    archive = path
    if path.is_dir():
        missing = [name for name in (DCP_METADATA, rundir.SHARDED_META) if not (path / name).is_file()]
        if missing:
            raise unreadable_checkpoint(path, f"a directory without {' and '.join(missing)}: not a sharded checkpoint")
        archive = path / rundir.SHARDED_META
    try:
        size = archive.stat().st_size
        if size == 0:
            detail = "an empty file, 0 bytes"
        elif not zipfile.is_zipfile(archive):  # torch checkpoints are zip archives: truncated, or not torch's
            detail = f"{size:,} bytes but no zip directory: truncated or foreign"
        else:
            with zipfile.ZipFile(archive) as opened:
                pickles = [n for n in opened.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
                if pickles:
                    opened.read(pickles[0])  # CRC-checked: the checkpoint's structure is intact
                    return
                detail = "a zip archive without data.pkl: not a torch checkpoint"
    except Exception as exc:  # an unreadable file or a corrupt archive, of whatever kind
        detail = first_line(exc)
    if archive != path:
        detail = f"its {rundir.SHARDED_META}: {detail}"
    raise unreadable_checkpoint(path, detail)


def save_failed(dirpath: Path, last: Path, exc: OSError) -> OSError:
    """An OSError (same errno) whose message says the save failed, what to do, and that `last` is intact."""
    reason = exc.strerror or first_line(exc)
    fix = "free space there" if exc.errno in _NO_SPACE else "fix the cause"
    kept = f"the previous checkpoint {last.name} is intact" if last.exists() else "no earlier checkpoint exists"
    return OSError(
        exc.errno, f"cannot save a checkpoint ({reason}); {fix} and rerun the same command ({kept})", str(dirpath)
    )


class AtomicCheckpoint(Callback):
    """Save `<dir>/last.ckpt` every `every_n_steps` optimizer steps and at the end of training.

    Saving happens at a step boundary (after the optimizer step), so a resumed run repeats no batch.
    A kill during the write leaves the previous `last.ckpt` intact; a failed write (disk full) removes its
    temporary file, keeps the previous `last.ckpt` and raises an OSError saying so. A sharded checkpoint (a
    directory) is moved into place by `replace_checkpoint`; `recover_checkpoint` finishes a move a kill interrupted.
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
        """Write the checkpoint to a temporary file (or directory) and move it over `last.ckpt` (rank 0 moves)."""
        tmp = self.dirpath / TMP
        try:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            if tmp.is_dir():  # a sharded save a kill interrupted: no stale shard may join the new one (rank 0)
                _remove(tmp, trainer)
            trainer.strategy.barrier("atomic_checkpoint_clean")  # every rank, whatever it saw: no rank waits alone
            trainer.save_checkpoint(tmp, weights_only=False)
            if trainer.is_global_zero:
                replace_checkpoint(tmp, self.last_path)
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
    """Rank 0 deletes its temporary file (or directory) if it exists; a failure to delete must not hide the original
    error."""
    if not trainer.is_global_zero:  # only rank 0 writes it: another rank must not delete rank 0's file
        return
    with contextlib.suppress(OSError):
        remove_checkpoint(path)


def remove_checkpoint(path: Path) -> None:
    """Delete a checkpoint file or sharded checkpoint directory, if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _aside(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def replace_checkpoint(tmp: Path, path: Path) -> None:
    """Move the whole checkpoint `tmp` to `path`, replacing what is there.

    A file over a file is one rename(2), atomic. A directory cannot be renamed over a non-empty one, so the previous
    checkpoint is first renamed aside to `.<name>.old`, then `tmp` into place, then the old one deleted: a kill
    between the two renames leaves no `path` but the whole previous checkpoint aside, which `recover_checkpoint`
    (run at every start) renames back.
    """
    if not tmp.is_dir() and not path.is_dir():
        os.replace(tmp, path)
        return
    aside = _aside(path)
    remove_checkpoint(aside)
    if path.exists():
        os.replace(path, aside)
    os.replace(tmp, path)
    remove_checkpoint(aside)


def recover_checkpoint(path: Path) -> None:
    """Finish what a kill inside `replace_checkpoint` left: put the previous checkpoint back if `path` is missing,
    else delete the one left aside."""
    aside = _aside(path)
    if not aside.exists():
        return
    if path.exists():
        remove_checkpoint(aside)
    else:
        os.replace(aside, path)


def read_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint as Lightning's dict, for inference: a file as saved (weights_only), or a sharded directory as
    its `meta.pt` plus `state_dict` with the model's weights gathered whole (the optimizer states are not read).

    The sharded read is torch.distributed.checkpoint's `load` without a process group (`no_dist=True`) into tensors
    shaped from the checkpoint's own metadata: any world size that saved it, on one process.
    """
    import torch

    if not path.is_dir():
        return torch.load(path, map_location=map_location, weights_only=True)
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    checkpoint = torch.load(path / rundir.SHARDED_META, map_location=map_location, weights_only=True)
    reader = dcp.FileSystemReader(str(path))
    prefix = "state_dict."  # ModelParallelStrategy.save_checkpoint saves {"state_dict": ..., "optimizer_0": ...}
    tensors = {
        key: torch.empty(meta.size, dtype=meta.properties.dtype)
        for key, meta in reader.read_metadata().state_dict_metadata.items()
        if key.startswith(prefix) and isinstance(meta, TensorStorageMetadata)
    }
    with warnings.catch_warnings():  # "torch.distributed is ... uninitialized, assuming ... a single process": yes
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        dcp.load(tensors, storage_reader=reader, no_dist=True)
    checkpoint["state_dict"] = {key[len(prefix) :]: t.to(map_location) for key, t in tensors.items()}
    return checkpoint
