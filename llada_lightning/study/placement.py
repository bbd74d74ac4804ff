"""Where each budget's window of sizes goes: around the optimum predicted from the finished smaller budgets.

Chinchilla's Approach 2 (Hoffmann et al. 2022, sec. 3.2) needs each budget's sizes to bracket its optimum N*(C):
an off-centre window biases the parabola's vertex and an exterior one leaves the budget out of the fit. Instead of
windows placed by hand from pilot runs, the budgets of one objective are placed in order of compute:
- the first budget's window is centred on `first_centre` (a size of the ladder);
- each later budget waits until every smaller budget of its objective has finished, then is centred on
  N* = k C^a: a least-squares line in log-log space through the finished budgets' vertices (>= 2 of them), or the
  one vertex moved by the prior exponent (`prior_exponent`, 0.5 as Chinchilla's a ~ 0.5), or, where no budget has
  an interior vertex, the lowest-loss size moved by the prior exponent (noted).
A window that cannot be centred on its prediction (it lies beyond the ladder's ends) is placed at that end and a
note says so: extend the ladder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llada_lightning.scaling.isoflop import fit_parabola

SLOPE_RANGE = (0.0, 1.0)  # N* = k C^a with 0 <= a <= 1: D* = C / 6N* cannot fall as compute grows


@dataclass(frozen=True)
class Vertex:
    """What one finished budget says about its optimum: the vertex (interior) or only the lowest-loss size."""

    budget: float
    N: float
    interior: bool


def vertex(budget: float, sizes: Sequence[float], losses: Sequence[float]) -> Vertex | None:
    """The IsoFLOP vertex of one finished budget (Approach 2's parabola in log N), or its lowest-loss size when the
    parabola is concave or its vertex lies outside the sizes; None without a finite loss."""
    n, y = np.asarray(sizes, dtype=float), np.asarray(losses, dtype=float)
    ok = np.isfinite(n) & np.isfinite(y) & (n > 0)
    if not ok.any():
        return None
    n, y = n[ok], y[ok]
    if len(np.unique(n)) >= 3:
        fit = fit_parabola(budget, n, y)
        if fit.usable():
            return Vertex(budget, float(fit.N_star), True)
    return Vertex(budget, float(n[np.argmin(y)]), False)


def predict_optimum(budget: float, vertices: Sequence[Vertex], prior_exponent: float) -> tuple[float, str]:
    """N* predicted at `budget` from smaller budgets' vertices, and how it was predicted (for the notes)."""
    interior = [v for v in vertices if v.interior]
    if len(interior) >= 2:
        x = np.log([v.budget for v in interior])
        y = np.log([v.N for v in interior])
        slope, intercept = np.polyfit(x, y, 1)  # log N* = log k + a log C (Hoffmann et al. 2022, eq. 4 in logs)
        a = float(np.clip(slope, *SLOPE_RANGE))
        if a != slope:
            intercept = float(np.mean(y - a * x))
        return float(math.exp(intercept + a * math.log(budget))), f"N* ~ C^{a:.2f} through {len(interior)} vertices"
    ref = interior[-1] if interior else (vertices[-1] if vertices else None)
    if ref is None:
        raise ValueError("no finished budget to predict from")
    what = "the vertex" if ref.interior else "the lowest-loss size (no interior vertex yet)"
    n = ref.N * (budget / ref.budget) ** prior_exponent  # N* ~ C^a with the prior a (Hoffmann et al. 2022)
    return n, f"{what} at C={ref.budget:.3g} moved by C^{prior_exponent:g}"


def window(ladder: Sequence[float], centre: float, size: int) -> tuple[list[int], bool]:
    """Indices of the `size` consecutive ladder sizes whose log-midpoint is nearest `centre`, and whether the
    window had to stop at an end of the ladder (the centre lies beyond the sizes it can bracket)."""
    n = len(ladder)
    size = min(size, n)
    logs = np.log(np.asarray(ladder, dtype=float))
    starts = range(n - size + 1)
    best = min(starts, key=lambda s: (abs((logs[s] + logs[s + size - 1]) / 2 - math.log(centre)), s))
    lo, hi = logs[best], logs[best + size - 1]
    mid_gap = (hi - lo) / (2 * max(1, size - 1))  # half a step: a centre further out is not bracketed evenly
    mid, c = (lo + hi) / 2, math.log(centre)
    # stopped at an end: the centre lies beyond it by more than half a step (not merely between two windows of a
    # ladder whose steps differ)
    below = best == 0 and c < mid - mid_gap * 1.0001
    above = best == n - size and c > mid + mid_gap * 1.0001
    clipped = below or above
    return list(range(best, best + size)), bool(clipped)
