"""Atomic file writes: results are never seen half-written, never destroyed by a failed write, and follow the
user's umask (so colleagues on a shared filesystem can read them)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process umask (POSIX has no read-only query: set and restore)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode `open()` would give a new file: 0o666 masked by the process umask."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """The mode `mkdir` would give a new directory: 0o777 masked by the process umask."""
    return 0o777 & ~umask()


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Write `path` by `write(tmp)` into a temporary file beside it, then rename; no temporary file survives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # mkstemp creates 0600 whatever the umask (and `write` may recreate the file)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
