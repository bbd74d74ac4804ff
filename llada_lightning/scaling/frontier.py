"""Compute frontier: `L(C) = E + A C^-alpha` (Hoffmann et al. 2022, eq. 2 along the optimal allocation), or the
pure power law `L = A C^-alpha` (E = 0; SMDM fits `log L = alpha' log C + beta'`, i.e. alpha = -alpha',
A = exp(beta')).

Both are fitted by least squares on log L, so each point weighs by its relative error as in Approach 3.
The power law is a straight line in log-log space (closed form). With E the problem is non-linear and
E is bounded to [0, min L): the fit runs scipy's bounded trust-region least squares in (log A', alpha, E),
where A' = A C_ref^-alpha is the amplitude at C_ref = geometric mean of C (keeps the problem well scaled:
log A itself is ~ alpha * 40 for C ~ 1e18), from a grid of starts (stopping once 3 agree), keeping the best.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from llada_lightning.scaling.errors import FitError
from llada_lightning.scaling.requirements import MIN_FRONTIER_POINTS, NEGLIGIBLE

ALPHA_STARTS = (0.1, 0.03, 0.3, 1.0)
E_FRACTION_STARTS = (0.5, 0.0, 0.9)  # E start as a fraction of min(loss)
ALPHA_MAX = 5.0
AGREE = 3  # stop once this many starts end on the same minimum (relative 1e-9): the usual case, ~4x faster
AT_BOUND_RTOL = 1e-6  # a parameter this close (relative) to a bound of the fit is reported as at that bound


@dataclass
class Frontier:
    """`L(C) = E + A C^-alpha`; `log_A` is kept because A itself can be huge for large C and alpha."""

    E: float
    log_A: float
    alpha: float
    irreducible: bool
    n_points: int
    rss_log: float  # residual sum of squares of log L at the optimum
    loss_min: float = float("nan")  # the smallest fitted loss: E's upper bound

    def at_bound(self) -> dict[str, str]:
        """Parameters at a bound of the fit: {"E": "lower" (E = 0) | "upper" (E = the smallest loss), "alpha": ...}.

        Only for the law with E (the pure power law fixes E = 0 by construction)."""
        out: dict[str, str] = {}
        if not self.irreducible:
            return out
        if NEGLIGIBLE * self.loss_min >= self.E:
            out["E"] = "lower"
        elif self.loss_min * (1 - AT_BOUND_RTOL) <= self.E:
            out["E"] = "upper"
        if self.alpha <= AT_BOUND_RTOL:
            out["alpha"] = "lower"
        elif self.alpha >= ALPHA_MAX * (1 - AT_BOUND_RTOL):
            out["alpha"] = "upper"
        return out

    @property
    def A(self) -> float:  # noqa: N802 - the law's own symbol
        return float(np.exp(self.log_A))

    def predict(self, compute) -> np.ndarray:
        log_c = np.log(np.asarray(compute, dtype=np.float64))
        return self.E + np.exp(self.log_A - self.alpha * log_c)

    def compute_for_loss(self, loss) -> np.ndarray:
        """Inverse of `predict`: C = ((L - E) / A)^(-1 / alpha); NaN where L <= E (never reached)."""
        excess = np.asarray(loss, dtype=np.float64) - self.E
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.exp((self.log_A - np.log(excess)) / self.alpha)
        return np.where(excess > 0, out, np.nan)

    def params(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "log_A": self.log_A, "alpha": self.alpha}


def _check(compute, loss) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(compute, dtype=np.float64).ravel()
    y = np.asarray(loss, dtype=np.float64).ravel()
    if len(c) != len(y):
        raise ValueError(f"compute and loss differ in length ({len(c)} vs {len(y)})")
    bad = ~(np.isfinite(c) & np.isfinite(y) & (c > 0) & (y > 0))
    if bad.any():
        raise FitError(
            f"{int(bad.sum())} points have a non-finite or non-positive compute or loss; drop them first",
            kind="frontier: non-finite or non-positive point",
        )
    return c, y


def fit_frontier(compute, loss, irreducible: bool = True) -> Frontier:
    """Fit `L(C) = E + A C^-alpha` (E >= 0, below min loss) or, with `irreducible=False`, `L = A C^-alpha`.

    Needs >= 4 points with E (3 parameters and one degree of freedom), >= 2 distinct C without.
    """
    c, y = _check(compute, loss)
    log_c, log_y = np.log(c), np.log(y)
    if len(np.unique(c)) < MIN_FRONTIER_POINTS:
        raise FitError(
            f"a frontier needs points at >= {MIN_FRONTIER_POINTS} distinct compute values",
            kind="frontier: too few compute values",
        )
    if not irreducible:
        slope, intercept = np.polyfit(log_c, log_y, 1)  # log L = intercept + slope log C (SMDM's fit)
        rss = float(np.sum((intercept + slope * log_c - log_y) ** 2))
        return Frontier(
            E=0.0,
            log_A=float(intercept),
            alpha=float(-slope),
            irreducible=False,
            n_points=len(y),
            rss_log=rss,
            loss_min=float(y.min()),
        )
    if len(y) < 4:
        raise FitError(
            f"L = E + A C^-alpha has 3 parameters: got only {len(y)} points; add budgets or fit irreducible=False",
            kind="frontier: too few points for E",
        )
    log_cref = float(np.mean(log_c))
    x = log_c - log_cref
    y_min = float(y.min())

    def residuals(p):
        log_a, alpha, e = p
        return np.log(e + np.exp(log_a - alpha * x)) - log_y

    def jacobian(p):
        log_a, alpha, e = p
        t = np.exp(log_a - alpha * x)
        pred = e + t
        return np.column_stack([t / pred, -x * t / pred, 1.0 / pred])

    upper_e = y_min * (1 - 1e-9)
    best = None
    agree = 0
    # alternate E and alpha starts so that the first few starts are already spread out
    starts = sorted(
        itertools.product(ALPHA_STARTS, E_FRACTION_STARTS),
        key=lambda s: E_FRACTION_STARTS.index(s[1]) + ALPHA_STARTS.index(s[0]),
    )
    for alpha0, frac in starts:
        e0 = frac * y_min
        excess = np.maximum(y - e0, 1e-12 * y_min)
        log_a0 = float(np.mean(np.log(excess) + alpha0 * x))  # amplitude matching the data at this alpha and E
        res = least_squares(
            residuals,
            [log_a0, alpha0, e0],
            jac=jacobian,
            bounds=([-np.inf, 0.0, 0.0], [np.inf, ALPHA_MAX, upper_e]),
            method="trf",
            x_scale="jac",
            xtol=1e-12,
            ftol=1e-12,
            gtol=1e-12,
        )
        if not np.isfinite(res.cost):
            continue
        if best is not None and abs(res.cost - best.cost) <= 1e-9 * best.cost + 1e-20:
            agree += 1
        elif best is None or res.cost < best.cost:
            agree = 1
        if best is None or res.cost < best.cost:
            best = res
        if agree >= AGREE:
            break
    if best is None:
        raise FitError(
            "no start of the frontier fit ended on a finite residual; check the data", kind="frontier: no finite fit"
        )
    log_a, alpha, e = (float(v) for v in best.x)
    return Frontier(
        E=e,
        log_A=log_a + alpha * log_cref,  # back to A in L = E + A C^-alpha
        alpha=alpha,
        irreducible=True,
        n_points=len(y),
        rss_log=2.0 * float(best.cost),
        loss_min=y_min,
    )
