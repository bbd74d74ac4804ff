"""Bootstrap intervals that say what they rest on.

Resampling: pairs (points drawn with replacement, optionally within strata, e.g. per budget and objective, so each
refit still sees every budget), or any `resample(rng)` callable, e.g. the model-based residual resampler of
`resampling.py`. Seeded (numpy Generator).

Intervals are percentile intervals (Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13) read off
order statistics, without interpolation: with q = (1 - level) / 2 and the B refit values sorted,
low = value[floor(q (B - 1))] and high = value[ceil((1 - q) (B - 1))] (0-based).

Failed refits. A refit that raises (a FitError, ValueError, ArithmeticError or LinAlgError), or that returns a NaN
for a quantity, has no value for it. Dropping such refits would condition the interval on the resamples where the
estimator happens to work, which understates the uncertainty exactly where it is largest. Each failed refit is
instead an outcome of unknown value: -inf for the lower bound and +inf for the upper bound, i.e. the interval holds
whatever the failed refits would have given (the worst-case bounds of an outcome with missing values: Manski 2003,
"Partial Identification of Probability Distributions", ch. 1). A bound is thus finite only while at most
floor(q (B - 1)) refits failed (4 of 200 at 95%, about q = 2.5%). A +-inf returned by the refit is a value of known
direction (k = inf: the MDM never reaches the ARM's loss) and is kept as it is.

An interval is `reliable` only if all of these hold, else it carries `problem` and its bounds are null:
- B >= requirements.min_resamples(level) (2 resamples in each tail: 80 at 95%);
- no bound is unbounded because of failed refits (failed refits <= floor(q (B - 1)));
- its width is positive and it contains the full-data estimate.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from llada_lightning.scaling.requirements import min_resamples

SKIPPED_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)
NON_FINITE = "non-finite value"  # failure kind of a refit that returned NaN for a quantity
ZERO_WIDTH_RTOL = 1e-9  # an interval narrower than this (relative) is rounding of one value: zero width
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def failure_kind(err: BaseException) -> str:
    """The kind of a failed refit: a FitError's own kind, else the error type and its message without numbers."""
    kind = getattr(err, "kind", None)
    if kind:
        return str(kind)
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {_NUMBER.sub('#', text)}"


def tail_index(q: float, n: int) -> int:
    """floor(q (n - 1)): the 0-based order statistic of the lower bound, and the failed refits a bound absorbs.

    Computed with a margin of 1e-9 so that a level like 0.8 (q = 0.09999999999999998 in floating point) does not
    lose an order statistic to rounding."""
    return math.floor(q * (n - 1) + 1e-9)


def _bounds(values: np.ndarray, q: float) -> tuple[float, float]:
    """Order-statistic percentile bounds of 1-d `values`, NaN (failed) counted as -inf below and +inf above."""
    b = len(values)
    failed = np.isnan(values)
    j = tail_index(q, b)
    low = np.sort(np.where(failed, -np.inf, values))[j]
    high = np.sort(np.where(failed, np.inf, values))[b - 1 - j]  # = ceil((1 - q) (b - 1)), symmetric
    return float(low), float(high)


@dataclass
class BootstrapResult:
    """Refits of every quantity: `samples[name]` has shape (n_resamples, *shape), NaN where the refit failed."""

    estimate: dict[str, np.ndarray]
    samples: dict[str, np.ndarray]
    level: float
    n_resamples: int
    failures: dict[str, int]  # kind -> refits that raised (every quantity failed in them)
    scheme: str = "pairs"
    problem: str | None = None  # set when no refit could be drawn at all (e.g. no residual degrees of freedom)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def q(self) -> float:
        return (1.0 - self.level) / 2.0

    @property
    def n_failed(self) -> int:
        """Refits that raised."""
        return sum(self.failures.values())

    @property
    def n_ok(self) -> int:
        return self.n_resamples - self.n_failed

    def _element_records(self, name: str) -> list[dict]:
        if name not in self._cache:
            est = self.estimate[name]
            flat_est = est.reshape(-1)
            flat = self.samples[name].reshape(self.n_resamples, -1) if self.n_resamples else None
            self._cache[name] = [
                self._record(float(flat_est[i]), None if flat is None else flat[:, i]) for i in range(len(flat_est))
            ]
        return self._cache[name]

    def _record(self, estimate: float, values: np.ndarray | None) -> dict:
        n_nan = 0 if values is None else int(np.isnan(values).sum())
        failures = dict(self.failures)
        if values is not None and n_nan > self.n_failed:
            failures[NON_FINITE] = n_nan - self.n_failed
        rec = {
            "estimate": estimate,
            "low": None,
            "high": None,
            "level": self.level,
            "scheme": self.scheme,
            "n_resamples": self.n_resamples,
            "n_ok": self.n_resamples - n_nan,
            "n_failed": n_nan,
            "failures": failures,
            "reliable": False,
            "problem": self.problem,
            "problem_kind": "not estimable" if self.problem else None,
        }
        if values is None or self.problem:
            rec["problem"] = self.problem or "no bootstrap resamples"
            rec["problem_kind"] = "not estimable" if self.problem else "no resamples"
            return rec
        low, high = _bounds(values, self.q)
        allowed = tail_index(self.q, self.n_resamples)  # failed refits a bound can absorb
        need = min_resamples(self.level)
        if self.n_resamples < need:
            kind = "too few resamples"
            rec["problem"] = (
                f"only {self.n_resamples} resamples: a {100 * self.level:g}% percentile interval needs >= {need}"
            )
        elif n_nan > allowed:
            kind = "failed refits"
            rec["problem"] = (
                f"{n_nan} of {self.n_resamples} refits failed (more than {allowed}, "
                f"{100 * self.q:g}%, reach a bound): the interval is unbounded"
            )
        elif low == high or (math.isfinite(high - low) and high - low <= ZERO_WIDTH_RTOL * max(abs(low), abs(high))):
            kind = "zero width"  # (an infinite bound of known direction, e.g. k = inf, is a width)
            rec["problem"] = f"zero width (every refit gave {low:.6g}): not an interval"
        elif not low <= estimate <= high:
            kind = "excludes the estimate"
            rec["problem"] = f"[{low:.4g}, {high:.4g}] does not contain the estimate {estimate:.4g}"
        else:
            kind = None
            rec.update(low=low, high=high, reliable=True)
        rec["problem_kind"] = kind
        return rec

    def record(self, name: str) -> dict | list[dict]:
        """The interval of a quantity as fit.json holds it: a dict (scalar) or one dict per element (array)."""
        recs = self._element_records(name)
        return recs[0] if self.estimate[name].ndim == 0 else recs

    def band(self, name: str) -> dict:
        """Pointwise intervals of a curve: lists of low, high, reliable, n_ok, n_failed, plus the common fields."""
        recs = self._element_records(name)
        failures: Counter[str] = Counter()
        for r in recs:
            for kind, count in r["failures"].items():
                failures[kind] = max(failures[kind], count)
        return {
            "low": [r["low"] for r in recs],
            "high": [r["high"] for r in recs],
            "reliable": [r["reliable"] for r in recs],
            "n_ok": [r["n_ok"] for r in recs],
            "n_failed": [r["n_failed"] for r in recs],
            "failures": dict(failures),
            "level": self.level,
            "scheme": self.scheme,
            "n_resamples": self.n_resamples,
            "problem": next((r["problem"] for r in recs if r["problem"]), None),
        }

    def interval(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) arrays: NaN where the interval is unreliable."""
        recs = self._element_records(name)
        shape = self.estimate[name].shape

        def pick(key: str) -> np.ndarray:
            return np.array([np.nan if r[key] is None else r[key] for r in recs]).reshape(shape)

        return pick("low"), pick("high")

    def summary(self) -> dict:
        """The refit counts of the whole bootstrap (per quantity counts are in each record)."""
        return {
            "scheme": self.scheme,
            "level": self.level,
            "n_resamples": self.n_resamples,
            "n_ok": self.n_ok,
            "n_failed": self.n_failed,
            "failures": dict(self.failures),
            "problem": self.problem,
        }


def _as_arrays(data) -> tuple[list[str] | None, list[np.ndarray]]:
    if isinstance(data, Mapping):
        return list(data), [np.asarray(v) for v in data.values()]
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        return None, [np.asarray(v) for v in data]
    raise TypeError("data must be a mapping of name -> array or a sequence of arrays")


def _call(fn: Callable, names: list[str] | None, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    out = fn(**dict(zip(names, arrays, strict=True))) if names is not None else fn(*arrays)
    if not isinstance(out, Mapping):
        raise TypeError(f"the bootstrapped function must return a mapping name -> value, got {type(out).__name__}")
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def pairs_resampler(arrays: Sequence[np.ndarray], strata=None) -> Callable[[np.random.Generator], list[np.ndarray]]:
    """Resample the points (rows of `arrays`) with replacement, within each stratum when `strata` is given.

    A stratum of one point cannot vary (its resample is itself), so strata of one point are pooled into one: a CSV
    whose every point is its own budget is resampled as plain pairs, not returned unchanged."""
    n = len(arrays[0])
    labels = None if strata is None else np.asarray(strata)
    if labels is None:
        groups = [np.arange(n)]
    else:
        groups = [np.flatnonzero(labels == s) for s in np.unique(labels)]
        single = [g for g in groups if len(g) < 2]
        groups = [g for g in groups if len(g) >= 2] + ([np.concatenate(single)] if single else [])

    def resample(rng: np.random.Generator) -> list[np.ndarray]:
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        return [a[idx] for a in arrays]

    return resample


def _draw(resample: Callable, rng: np.random.Generator) -> Sequence[np.ndarray] | str:
    """One resample, or the kind of the SKIPPED_ERRORS failure drawing it."""
    try:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return resample(rng)
    except SKIPPED_ERRORS as err:
        return failure_kind(err)


def _refit(fn: Callable[..., Mapping], names: list[str] | None, arrays: Sequence[np.ndarray] | str) -> Mapping | str:
    """One refit: its result, or the kind of a SKIPPED_ERRORS failure (counted, not raised)."""
    if isinstance(arrays, str):  # drawing the resample failed
        return arrays
    try:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # extreme refits: inf/NaN, counted
            return _call(fn, names, arrays)
    except SKIPPED_ERRORS as err:
        return failure_kind(err)


_JOB: tuple | None = None  # (fn, names, resamples) of the parallel refits: inherited by the forked workers


def _refit_job(i: int) -> Mapping | str:
    assert _JOB is not None
    fn, names, draws = _JOB
    return _refit(fn, names, draws[i])


def _refits_parallel(fn, names, resample, rng, n_resamples: int, workers: int) -> list:
    """Every refit's outcome, in order, from `workers` forked processes; the draws are made here, in order."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    global _JOB
    draws = [_draw(resample, rng) for _ in range(n_resamples)]
    if "fork" not in mp.get_all_start_methods() or n_resamples < 2:  # no fork (Windows): the same, serially
        return [_refit(fn, names, d) for d in draws]
    _JOB = (fn, names, draws)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:
            return list(pool.map(_refit_job, range(n_resamples), chunksize=max(1, n_resamples // (4 * workers))))
    finally:
        _JOB = None


def bootstrap(
    fn: Callable[..., Mapping],
    data: Mapping[str, object] | Sequence[object],
    *,
    n_resamples: int = 200,
    seed: int = 0,
    level: float = 0.95,
    strata=None,
    resample: Callable[[np.random.Generator], Sequence[np.ndarray]] | None = None,
    scheme: str | None = None,
    problem: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> BootstrapResult:
    """Intervals for every quantity `fn` returns (a mapping of name -> float or array), by refitting resamples.

    `data` is a sequence of equal-length arrays (passed as `fn(*arrays)`) or a mapping (passed as `fn(**data)`).
    Resamples are pairs (within `strata` when given) unless `resample(rng)` returns the arrays of each refit (in
    the order of `data`). `problem` (e.g. "no residual degrees of freedom") skips the refits: every interval is then
    unreliable with that reason. `progress(done, total)` is called after each refit. The full-data call must
    succeed (its errors propagate); refits that raise SKIPPED_ERRORS are counted by kind; other errors are bugs
    and propagate. `workers > 1` refits in that many forked processes (Linux/macOS: fork): every resample is drawn
    here first, in order, so the result is the same as with one.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    names, arrays = _as_arrays(data)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("all data arrays must have the same length")
    estimate = _call(fn, names, arrays)
    if resample is None:
        resample = pairs_resampler(arrays, strata)
        scheme = scheme or ("pairs within strata" if strata is not None else "pairs")
    if problem is not None:
        n_resamples = 0
    rng = np.random.default_rng(seed)
    samples = {k: np.full((n_resamples, *v.shape), np.nan) for k, v in estimate.items()}
    failures: Counter[str] = Counter()
    refits = _refits_parallel(fn, names, resample, rng, n_resamples, workers) if workers > 1 else None
    for i in range(n_resamples):
        out = refits[i] if refits is not None else _refit(fn, names, _draw(resample, rng))
        if isinstance(out, str):
            failures[out] += 1
        else:
            for k in estimate:
                samples[k][i] = out[k]
        if progress is not None:
            progress(i + 1, n_resamples)
    return BootstrapResult(
        estimate=estimate,
        samples=samples,
        level=level,
        n_resamples=n_resamples,
        failures=dict(failures),
        scheme=scheme or "custom",
        problem=problem,
    )
