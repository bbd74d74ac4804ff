"""Intervals for accuracies: Student-t over seeds (the headline) and Wilson over the pooled per-fact outcomes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Interval:
    """mean with a `level` interval [lo, hi]; lo = hi = None where it is undefined (one seed)."""

    mean: float
    lo: float | None
    hi: float | None
    n: int
    level: float = 0.95

    def as_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n, "level": self.level}


def t_interval(values: Sequence[float], level: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)) -> Interval:
    """mean +- t_{(1+level)/2, n-1} s / sqrt(n) over the seeds (Student 1908), clipped to `bounds`.

    s is the sample standard deviation (ddof 1); one value gives no interval (lo = hi = None), and seeds that all
    agree give a zero-width one: the interval measures seed-to-seed variation only (see `wilson_interval`).
    """
    n = len(values)
    if n == 0:
        raise ValueError("t_interval needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return Interval(mean, None, None, n, level)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, max(bounds[0], mean - half), min(bounds[1], mean + half), n, level)


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> Interval:
    """Wilson's score interval for a binomial proportion (Wilson 1927), for k correct of n pooled facts.

    Treats every (seed, fact) outcome as independent, which they are not across seeds of one fact set: a
    complement to the t interval (it stays informative when every seed scores 0), not a replacement.
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")
    z = float(stats.norm.ppf((1 + level) / 2))
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends (centre = half there)
    hi = 1.0 if successes == trials else min(1.0, centre + half)
    return Interval(p, lo, hi, trials, level)
