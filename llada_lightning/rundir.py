"""A run directory: its layout, its typed result record, and the lock that gives it one owner (stdlib only).

    <run_dir>/config.yaml          the resolved RunConfig (written before training starts)
    <run_dir>/result.json          the result record (`RunResult`): written once, when the run ends or fails
    <run_dir>/progress.json        step, total and latest losses while it trains (rank 0)
    <run_dir>/job.json             the sweep launcher's record of the job that runs it (id, pid, log)
    <run_dir>/checkpoints/last.ckpt   the resumable checkpoint
    <run_dir>/tokenizer.json       the tokenizer it was trained with
    <run_dir>/tensorboard/         TensorBoard event files
    <run_dir>/.lock                held (flock) by the one process training it
    <run_dir>/trunk.json           a WSD shared trunk: the steps at which it saves branch checkpoints
    <run_dir>/checkpoints/branch-<s>.ckpt   a trunk's full checkpoint at step s, where a budget's decay branches off
    <run_dir>/branch.json          a WSD branch: its trunk's directory, its branch step, every branch step of the trunk

Every module that reads or writes one of these goes through this module; `scaling/` may import it (no torch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llada_lightning.io import atomic_write_json, file_mode

CONFIG = "config.yaml"
RESULT = "result.json"
PROGRESS = "progress.json"
JOB = "job.json"
JOB_LOG = "job.log"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
TOKENIZER = "tokenizer.json"
TENSORBOARD = "tensorboard"
LOCK = ".lock"
TRUNK = "trunk.json"
BRANCH = "branch.json"


def config_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CONFIG


def result_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / RESULT


def progress_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / PROGRESS


def job_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / JOB


def trunk_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / TRUNK


def branch_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / BRANCH


def branch_checkpoint(trunk_dir: str | Path, step: int) -> Path:
    """The checkpoint a WSD trunk saves at `step`, where one budget's decay branches off."""
    return Path(trunk_dir) / CHECKPOINTS / f"branch-{int(step)}.ckpt"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def last_checkpoint(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS / LAST_CHECKPOINT


# A sharded checkpoint (train.strategy=fsdp) is a directory: torch.distributed.checkpoint's shards and `.metadata`,
# and Lightning's `meta.pt` holding everything but the weights and optimizer states (lightning/fabric/utilities/load.py
# `_METADATA_FILENAME`, written last, after every shard).
SHARDED_META = "meta.pt"


def checkpoint_exists(path: str | Path) -> bool:
    """Whether `path` holds a checkpoint: a file, or a sharded checkpoint directory."""
    path = Path(path)
    return path.is_file() or (path / SHARDED_META).is_file()


def checkpoint_file(path: str | Path) -> Path:
    """The file holding a checkpoint's `global_step`, hyper-parameters and callback states: the checkpoint itself,
    or the `meta.pt` of a sharded checkpoint directory."""
    path = Path(path)
    return path / SHARDED_META if path.is_dir() else path


def tokenizer_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / TOKENIZER


def is_run_dir(path: str | Path) -> bool:
    """A directory `llada train` (or a sweep launcher) has written: it holds config.yaml or result.json."""
    return config_path(path).is_file() or result_path(path).is_file()


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every run directory at or below `root`, sorted (a run's own subdirectories are not searched)."""
    root = Path(root)
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        if is_run_dir(dirpath):
            found.append(Path(dirpath))
            dirnames.clear()
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(found)


def yaml_value(text: str, section: str, key: str) -> str | None:
    """`key` inside top-level `section:` of a plain block-style YAML (a run's resolved config.yaml), unparsed."""
    m = re.search(rf"^{re.escape(section)}:\s*\n((?:[ \t]+.*\n?|\s*\n)*)", text, flags=re.M)
    if not m:
        return None
    k = re.search(rf"^[ \t]+{re.escape(key)}:[ \t]*(\S.*?)\s*$", m.group(1), flags=re.M)
    return k.group(1).strip("'\"") if k else None


def read_record(path: str | Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or None when it is missing, unreadable or not an object."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(eq=False)  # compared as a Mapping: equal to the dict of its record
class RunResult(Mapping[str, Any]):
    """What `result.json` holds. A finished run fills every field; a failed one has status, error, traceback.

    It is also a read-only Mapping of its JSON record (`result["val_loss"]`, `result.get(...)`, `dict(result)`):
    keys that are not fields live in `extra`, so records written by other versions keep them.
    """

    status: str
    run_dir: str = ""
    objective: str | None = None
    model: str | None = None
    signature: str | None = None
    seed: int | None = None
    N_nonemb: int | None = None  # noqa: N815 - the names scaling-law papers use
    N_total: int | None = None  # noqa: N815
    seq_len: int | None = None
    tokens: int | None = None
    flops_6N: float | None = None  # noqa: N815
    flops_full: float | None = None
    flops_convention: str | None = None
    flops_budget: float | None = None
    steps: int | None = None
    data_epochs: float | None = None
    unique_tokens: int | None = None  # distinct training tokens drawn from (data.unique_tokens, or the whole split)
    val_loss: float | None = None
    val_bpb: float | None = None
    val_loss_kind: str | None = None  # "elbo" (an upper bound on the NLL) or "nll" (exact)
    train_loss_is_nll_bound: bool | None = None
    val_loss_initial: float | None = None
    wall_time_s: float | None = None
    segment_wall_time_s: float | None = None
    world_size: int | None = None
    message: str | None = None  # why a segment stopped early (preempted)
    error: str | None = None  # failed: the one-line error
    traceback: str | None = None
    time: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        known.setdefault("status", "unknown")
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: every field that is set (a finished run also its null losses), plus `extra`."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "extra" and self._present(k, v)}
        return {**self.extra, **out}

    def _present(self, key: str, value: Any) -> bool:
        return value is not None or (self.status == "done" and key in _ALWAYS)

    @property
    def done(self) -> bool:
        return self.status == "done"

    def __getitem__(self, key: str) -> Any:
        if key in _FIELDS:
            value = getattr(self, key)
            if not self._present(key, value):
                raise KeyError(key)
            return value
        return self.extra[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


_FIELDS = {f.name for f in dataclasses.fields(RunResult)} - {"extra"}
_ALWAYS = {"run_dir", "val_loss", "val_bpb"}  # in every finished record, null when unknown


def read_result(run_dir: str | Path) -> RunResult | None:
    """The run's result record, or None when there is none or it does not parse (a reader reports that)."""
    data = read_record(result_path(run_dir))
    return None if data is None else RunResult.from_dict(data)


def trunk_record(run_dir: str | Path) -> dict[str, Any] | None:
    """A WSD trunk's record (`{"branch_steps": [...]}`), or None if `run_dir` is not a trunk."""
    return read_record(trunk_path(run_dir))


def branch_record(run_dir: str | Path) -> dict[str, Any] | None:
    """A WSD branch's record (`{"trunk": dir, "step": s, "branch_steps": [...]}`), or None."""
    return read_record(branch_path(run_dir))


def write_trunk_record(run_dir: str | Path, branch_steps: list[int]) -> None:
    atomic_write_json(trunk_path(run_dir), {"branch_steps": sorted({int(s) for s in branch_steps})})


def write_branch_record(run_dir: str | Path, trunk_dir: str | Path, step: int, branch_steps: list[int]) -> None:
    record = {"trunk": str(Path(trunk_dir).resolve()), "step": int(step), "branch_steps": sorted(branch_steps)}
    atomic_write_json(branch_path(run_dir), record)


def write_result(run_dir: str | Path, result: RunResult) -> None:
    """Write `result.json` atomically (readers never see half a record)."""
    atomic_write_json(result_path(run_dir), result.to_dict())


RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")


def is_rank_zero() -> bool:
    """Whether this process is global rank 0: every rank variable that is set (torchrun, srun, Lightning's
    own DDP launcher, which sets only LOCAL_RANK in the processes it starts) is 0. Rank 0 owns the directory."""
    return all(int(os.environ.get(name) or 0) == 0 for name in RANK_VARIABLES)


class RunDirBusy(RuntimeError):
    """Another live process holds the run directory."""


class RunLock:
    """An advisory, exclusive flock on `<run_dir>/.lock`: one process trains a run directory at a time.

    The kernel releases a flock when its holder exits, however it dies, so the lock is never stale; the file
    only records who holds it (pid, host, time) for the message the second process prints.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def holder(self) -> str:
        """'pid P on HOST since T' as written by the holder, or 'another process' when unreadable."""
        info = read_record(self.path) or {}
        if "pid" not in info:
            return "another process"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info.get("time", 0))))
        return f"pid {info['pid']} on {info.get('host', '?')} since {since}"

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunDirBusy(
                    f"{self.path.parent} is in use by {self.holder()}; wait for it to finish, or stop it "
                    "(a sweep: `llada sweep cancel`) before starting this run again"
                ) from None
            raise
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def is_held(self) -> bool:
        """Whether some live process holds the lock now (this one included)."""
        if self._fd is not None:
            return True
        if not self.path.is_file():
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class RunSummary:
    """One row of `llada runs`: what a run directory says about itself, without importing torch."""

    run_dir: Path
    status: str  # done | failed | preempted | running (its lock is held) | stopped (resumable) | not started
    objective: str = ""
    model: str = ""
    steps: str = ""  # "k/N" while unfinished
    N: int | None = None
    tokens: int | None = None
    flops: float | None = None  # in the run's own flops_convention
    convention: str = ""
    loss: float | None = None  # final validation loss (done), else the latest one


def summarize(run_dir: str | Path) -> RunSummary:
    """The RunSummary of one run directory (missing or unreadable files leave fields empty)."""
    path = Path(run_dir)
    text = ""
    with contextlib.suppress(OSError):
        text = config_path(path).read_text(errors="replace")
    objective, model = yaml_value(text, "objective", "name") or "", yaml_value(text, "model", "name") or ""
    row = RunSummary(path, "not started", objective, model)
    result = read_result(path)
    progress = read_record(progress_path(path)) or {}
    if result is not None and result.status in ("done", "failed"):
        row.status = result.status
    elif RunLock(path).is_held():
        row.status = "running"
    elif progress or checkpoint_exists(last_checkpoint(path)) or result is not None:
        row.status = "stopped"
    if result is not None and result.done:
        row.objective, row.model = result.objective or row.objective, result.model or row.model
        row.steps, row.N, row.tokens, row.loss = (
            str(result.steps or ""),
            result.N_nonemb,
            result.tokens,
            result.val_loss,
        )
        row.convention = result.flops_convention or "6N"
        row.flops = result.flops_6N if row.convention == "6N" else result.flops_full
    elif progress:
        row.steps = f"{progress.get('step', '?')}/{progress.get('total', '?')}"
        loss = progress.get("val/loss")
        row.loss = float(loss) if isinstance(loss, int | float) else None
    return row
