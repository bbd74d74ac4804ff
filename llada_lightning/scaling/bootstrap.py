"""Percentile bootstrap: resample points with replacement, refit, read intervals off the refits' quantiles.

Seeded (numpy Generator), optionally stratified (resample within each stratum, e.g. per budget and objective, so
each refit still sees every budget). Refits that raise ValueError / ArithmeticError / LinAlgError are skipped
and counted by message; any other exception is a bug and propagates.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

SKIPPED_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)


@dataclass
class BootstrapResult:
    estimate: dict[str, np.ndarray]  # fn on the full data
    low: dict[str, np.ndarray]
    high: dict[str, np.ndarray]
    samples: dict[str, np.ndarray]  # shape (n_ok, *shape of the quantity)
    level: float
    n_resamples: int
    n_ok: int
    n_failed: int
    failures: dict[str, int]  # error message -> count

    def interval(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.low[name], self.high[name]

    def contains(self, name: str, value) -> np.ndarray:
        return (self.low[name] <= value) & (value <= self.high[name])

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "n_resamples": self.n_resamples,
            "n_ok": self.n_ok,
            "n_failed": self.n_failed,
            "failures": dict(self.failures),
            "quantities": {
                k: {"estimate": self.estimate[k].tolist(), "low": self.low[k].tolist(), "high": self.high[k].tolist()}
                for k in self.estimate
            },
        }


def _as_arrays(data) -> tuple[list[str] | None, list[np.ndarray]]:
    if isinstance(data, Mapping):
        return list(data), [np.asarray(v) for v in data.values()]
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        return None, [np.asarray(v) for v in data]
    raise TypeError("data must be a mapping of name -> array or a sequence of arrays")


def _call(fn: Callable, names: list[str] | None, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    out = fn(**dict(zip(names, arrays, strict=True))) if names is not None else fn(*arrays)
    if not isinstance(out, Mapping):
        raise TypeError(f"the bootstrapped function must return a mapping name -> value, got {type(out).__name__}")
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def bootstrap(
    fn: Callable[..., Mapping],
    data: Mapping[str, object] | Sequence[object],
    *,
    n_resamples: int = 200,
    seed: int = 0,
    level: float = 0.95,
    strata=None,
) -> BootstrapResult:
    """Percentile intervals for every quantity `fn` returns (a mapping of name -> float or array).

    `data` is a sequence of equal-length arrays (passed as `fn(*arrays)`) or a mapping (passed as `fn(**data)`).
    `strata` (one label per point) resamples within each label, keeping each label's count.
    Raises ValueError if every refit fails.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    names, arrays = _as_arrays(data)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("all data arrays must have the same length")
    estimate = _call(fn, names, arrays)
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(np.asarray(strata) == s) for s in np.unique(strata)]
    samples: dict[str, list[np.ndarray]] = {k: [] for k in estimate}
    failures: Counter[str] = Counter()
    for _ in range(n_resamples):
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        try:
            out = _call(fn, names, [a[idx] for a in arrays])
        except SKIPPED_ERRORS as err:
            failures[f"{type(err).__name__}: {err}"] += 1
            continue
        for k in estimate:
            samples[k].append(out[k])
    n_ok = n_resamples - sum(failures.values())
    if n_ok == 0 and n_resamples > 0:
        raise ValueError(f"all {n_resamples} bootstrap refits failed: {failures.most_common(3)}")
    stacked = {k: np.stack(v) if v else np.empty((0, *estimate[k].shape)) for k, v in samples.items()}
    q = 100 * (1 - level) / 2
    low, high = {}, {}
    for k, s in stacked.items():
        if len(s) == 0:
            low[k] = high[k] = np.full(estimate[k].shape, np.nan)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (e.g. k unreachable) give NaN
            low[k] = np.nanpercentile(s, q, axis=0)
            high[k] = np.nanpercentile(s, 100 - q, axis=0)
    return BootstrapResult(
        estimate=estimate,
        low=low,
        high=high,
        samples=stacked,
        level=level,
        n_resamples=n_resamples,
        n_ok=n_ok,
        n_failed=sum(failures.values()),
        failures=dict(failures),
    )
