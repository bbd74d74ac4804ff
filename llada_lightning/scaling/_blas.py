"""Run tiny-matrix code with single-threaded OpenBLAS (what threadpoolctl does, without the dependency).

scipy's L-BFGS-B calls BLAS on 5-dimensional problems; OpenBLAS's threads cost more than they save there, and on a
busy 2-core machine their wake-ups made the 4500-start fit 5-20x slower (measured). The thread count is restored
on exit. Only OpenBLAS builds loaded in this process (numpy's and scipy's wheels) are touched; elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SYMBOLS = ("scipy_openblas", "openblas")
_SUFFIXES = ("", "64_")


def _openblas_controls() -> list[tuple]:
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return []
    paths = sorted({ln.split()[-1] for ln in maps.read_text().splitlines() if "openblas" in ln.lower() and ".so" in ln})
    controls = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _SYMBOLS:
            for suffix in _SUFFIXES:
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    controls.append((get, set_))
                    break
            else:
                continue
            break
    return controls


@contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit OpenBLAS to `n` threads inside the block (None: leave it alone)."""
    if n is None:
        yield
        return
    controls = _openblas_controls()
    saved = [(get(), set_) for get, set_ in controls]
    for _, set_ in saved:
        set_(int(n))
    try:
        yield
    finally:
        for old, set_ in saved:
            set_(old)
