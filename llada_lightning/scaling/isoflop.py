"""IsoFLOP profiles (Chinchilla Approach 2: Hoffmann et al. 2022, sec. 3.2).

For each compute budget C the sweep trains several sizes N with D = C / (6N). A parabola of loss in log N gives
the budget's vertex N*(C), L*(C), D*(C) = C / (6 N*); then `N* = k_N C^a` and `D* = k_D C^b` are least-squares
lines in log-log space.

The parabola is only a local approximation of the profile: with a wide or off-centre grid its vertex is biased
(arXiv 2603.22339), so each budget reports its grid width (log10 span of N) and the vertex's distance to either
end of the grid. A concave parabola (no minimum) or a vertex outside the sampled sizes is flagged and left out of
the exponent fit (unless `allow_exterior=True` for the latter), never used silently.

A bootstrap refit evaluates the same estimator as the full-data fit: `fit_isoflop(..., budgets=fit.used)` uses
exactly those budgets, each vertex wherever the refit's parabola puts it (the interior test is a choice made once,
on the full data); a refit is undefined (a FitError) only where a parabola has no minimum or too few sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from llada_lightning.scaling.errors import FitError
from llada_lightning.scaling.requirements import MIN_BUDGETS, MIN_SIZES

BUDGET_RTOL = 0.02  # budgets within 2% are the same budget (runs floor their step count)


def group_budgets(budget, rtol: float = BUDGET_RTOL) -> np.ndarray:
    """Label each value by its budget: values within `rtol` (relative, in sorted order) share a label.

    The label is the median of the group, so launched budgets (1e15) and measured compute (0.998e15) both work.
    """
    c = np.asarray(budget, dtype=np.float64)
    if not np.all(np.isfinite(c) & (c > 0)):
        raise ValueError("budgets must be finite and positive (drop points without a budget first)")
    order = np.argsort(c)
    labels = np.empty_like(c)
    start = 0
    for i in range(1, len(c) + 1):
        if i == len(c) or np.log(c[order[i]] / c[order[i - 1]]) > rtol:
            members = order[start:i]
            labels[members] = np.median(c[members])
            start = i
    return labels


def distinct_sizes(n_params, rtol: float = 1e-6) -> int:
    n = np.sort(np.asarray(n_params, dtype=np.float64))
    if len(n) == 0:
        return 0
    return 1 + int(np.sum(np.diff(np.log(n)) > rtol))


@dataclass
class BudgetFit:
    """The parabola `loss = c2 x^2 + c1 x + c0` in x = log10 N at one budget, and its vertex."""

    budget: float
    n_points: int
    n_sizes: int
    coef: tuple[float, float, float]  # (c2, c1, c0) in x = log10 N
    convex: bool  # c2 > 0: the parabola has a minimum
    interior: bool  # the vertex lies strictly inside the sampled sizes
    N_star: float  # NaN when not convex
    L_star: float
    D_star: float
    log10_min: float  # sampled log10 N range
    log10_max: float
    warning: str | None = None

    @property
    def log10_span(self) -> float:
        """Grid width: decades of N sampled at this budget."""
        return self.log10_max - self.log10_min

    @property
    def log10_below(self) -> float:
        """Decades from the smallest size up to the vertex (negative if the vertex is below the grid)."""
        return float(np.log10(self.N_star) - self.log10_min) if self.convex else float("nan")

    @property
    def log10_above(self) -> float:
        """Decades from the vertex up to the largest size (negative if the vertex is above the grid)."""
        return float(self.log10_max - np.log10(self.N_star)) if self.convex else float("nan")

    def usable(self, allow_exterior: bool = False) -> bool:
        return self.convex and (self.interior or allow_exterior)

    def predict(self, n_params) -> np.ndarray:
        return np.polyval(self.coef, np.log10(np.asarray(n_params, dtype=np.float64)))

    def to_dict(self) -> dict:
        return {
            "budget": self.budget,
            "n_points": self.n_points,
            "n_sizes": self.n_sizes,
            "coef_log10N": list(self.coef),
            "convex": self.convex,
            "interior": self.interior,
            "N_star": self.N_star,
            "D_star": self.D_star,
            "L_star": self.L_star,
            "log10_span": self.log10_span,
            "log10_below": self.log10_below,
            "log10_above": self.log10_above,
            "warning": self.warning,
        }


def fit_parabola(budget: float, n_params, loss, tokens=None) -> BudgetFit:
    """The IsoFLOP parabola of one budget. Raises ValueError with fewer than 3 distinct sizes.

    D* is C / (6 N*) by default (Chinchilla). With `tokens`, D* is read off a log-log line of the runs' own
    token counts against N at this budget instead: identical under the 6N convention, and consistent with the
    budget's own FLOP convention otherwise (e.g. "full", where a run trains on C / (6N + attention + head) tokens).
    """
    n = np.asarray(n_params, dtype=np.float64).ravel()
    y = np.asarray(loss, dtype=np.float64).ravel()
    if len(n) != len(y):
        raise ValueError(f"n_params and loss differ in length ({len(n)} vs {len(y)})")
    k = distinct_sizes(n)
    if k < MIN_SIZES:
        raise FitError(
            f"budget {budget:.3g} has only {k} model sizes; an IsoFLOP fit needs >= {MIN_SIZES} "
            "— add sizes to the sweep",
            kind=f"budget {budget:.3g}: fewer than {MIN_SIZES} distinct sizes",
        )
    x = np.log10(n)
    x_mid = 0.5 * (x.min() + x.max())
    c2, c1c, c0c = np.polyfit(x - x_mid, y, 2)  # centred for conditioning
    coef = (float(c2), float(c1c - 2 * c2 * x_mid), float(c2 * x_mid**2 - c1c * x_mid + c0c))
    convex = bool(c2 > 0)
    warning = None
    if convex:
        x_star = x_mid - c1c / (2 * c2)
        n_star = float(10**x_star)
        l_star = float(c0c - c1c**2 / (4 * c2))
        interior = bool(x.min() < x_star < x.max())
        if tokens is None:
            d_star = budget / (6.0 * n_star)  # C = 6 N D (Chinchilla)
        else:
            d = np.asarray(tokens, dtype=np.float64).ravel()
            slope, icpt = np.polyfit(x, np.log10(d), 1)
            d_star = float(10 ** (icpt + slope * x_star))
        if not interior:
            side = "below the smallest" if x_star <= x.min() else "above the largest"
            warning = (
                f"budget {budget:.3g}: the parabola's vertex N*={n_star:.3g} is {side} size sampled "
                f"({10 ** x.min():.3g}..{10 ** x.max():.3g}); extend the grid toward it"
            )
    else:
        n_star = l_star = d_star = float("nan")
        interior = False
        warning = (
            f"budget {budget:.3g}: the parabola of loss in log N is not convex (c2={c2:.3g} <= 0), no minimum; "
            "the sizes may be too close together or the runs too noisy"
        )
    return BudgetFit(
        budget=float(budget),
        n_points=len(y),
        n_sizes=k,
        coef=coef,
        convex=convex,
        interior=interior,
        N_star=n_star,
        L_star=l_star,
        D_star=d_star,
        log10_min=float(x.min()),
        log10_max=float(x.max()),
        warning=warning,
    )


@dataclass
class IsoFLOPFit:
    """Per-budget parabolas and the power laws N* = exp(log_kN) C^a, D* = exp(log_kD) C^b over usable budgets."""

    budgets: list[BudgetFit]
    a: float
    log_kN: float
    b: float
    log_kD: float
    used: list[float]  # budgets entering the exponent fit
    warnings: list[str] = field(default_factory=list)

    def predict_n_opt(self, compute) -> np.ndarray:
        return np.exp(self.log_kN + self.a * np.log(np.asarray(compute, dtype=np.float64)))

    def predict_d_opt(self, compute) -> np.ndarray:
        return np.exp(self.log_kD + self.b * np.log(np.asarray(compute, dtype=np.float64)))

    def vertices(self) -> dict[str, np.ndarray]:
        """(C, N*, D*, L*) of the budgets used in the exponent fit."""
        rows = [f for f in self.budgets if f.budget in self.used]
        return {
            "C": np.array([f.budget for f in rows]),
            "N_star": np.array([f.N_star for f in rows]),
            "D_star": np.array([f.D_star for f in rows]),
            "L_star": np.array([f.L_star for f in rows]),
        }

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "log_kN": self.log_kN,
            "log_kD": self.log_kD,
            "budgets_used": list(self.used),
            "budgets": [f.to_dict() for f in self.budgets],
            "warnings": list(self.warnings),
        }


def _condense(problems: list[str], kinds: list[str], keep: int = 3) -> str:
    """The budgets' problems, one by one for the first `keep` of each kind, then counted ("and 35 more: ...")."""
    by_kind: dict[str, list[str]] = {}
    for problem, kind in zip(problems, kinds, strict=False):
        by_kind.setdefault(kind.split(": ", 1)[-1], []).append(problem)
    parts = []
    for kind, texts in by_kind.items():
        parts += texts[:keep]
        if len(texts) > keep:
            parts.append(f"and {len(texts) - keep} more budgets with {kind}")
    return "; ".join(parts)


def _match(label: float, budgets: Sequence[float], rtol: float) -> bool:
    return any(abs(np.log(label / b)) <= rtol for b in budgets)


def fit_isoflop(
    budget,
    n_params,
    loss,
    tokens=None,
    *,
    allow_exterior: bool = False,
    rtol: float = BUDGET_RTOL,
    budgets: Sequence[float] | None = None,
) -> IsoFLOPFit:
    """Chinchilla Approach 2 over points labelled by their compute budget.

    Budgets with fewer than 3 sizes, a concave parabola or (unless `allow_exterior`) a vertex outside the grid are
    reported in `warnings` and left out; a FitError (a ValueError) says why when fewer than 2 budgets remain.
    `budgets` (a refit of an earlier fit's `used`): use exactly these budgets, exterior vertices included; a
    FitError names the first one without a parabola minimum. Other budgets of the data are ignored.
    """
    c = np.asarray(budget, dtype=np.float64).ravel()
    n = np.asarray(n_params, dtype=np.float64).ravel()
    y = np.asarray(loss, dtype=np.float64).ravel()
    d = None if tokens is None else np.asarray(tokens, dtype=np.float64).ravel()
    if not (len(c) == len(n) == len(y)) or (d is not None and len(d) != len(y)):
        raise ValueError("budget, n_params, loss (and tokens) must have the same length")
    labels = group_budgets(c, rtol)
    fits: list[BudgetFit] = []
    problems: list[str] = []
    kinds: list[str] = []
    for label in np.unique(labels):
        if budgets is not None and not _match(label, budgets, rtol):
            continue
        sel = labels == label
        try:
            fit = fit_parabola(float(label), n[sel], y[sel], None if d is None else d[sel])
        except FitError as err:
            problems.append(str(err))
            kinds.append(err.kind)
            continue
        fits.append(fit)
        if fit.warning:
            problems.append(fit.warning)
            kinds.append(
                f"budget {fit.budget:.3g}: " + ("vertex outside the sizes" if fit.convex else "concave parabola")
            )
    if budgets is not None:  # a refit: every requested budget needs a parabola with a minimum
        by_label = {f.budget: f for f in fits}
        for b in budgets:
            f = next((v for k, v in by_label.items() if _match(k, [b], rtol)), None)
            if f is None or not f.convex:
                kind = next((k for k in kinds if k.startswith(f"budget {b:.3g}:")), f"budget {b:.3g}: no points")
                raise FitError(f"refit over budgets {list(budgets)}: {'; '.join(problems) or kind}", kind=kind)
        allow_exterior = True
    used = [f for f in fits if f.usable(allow_exterior)]
    if len(used) < MIN_BUDGETS:
        reasons = _condense(problems, kinds) if problems else f"only {len(used)} budget(s) in the data"
        raise FitError(
            f"an IsoFLOP fit needs >= {MIN_BUDGETS} budgets with a usable parabola vertex, got {len(used)}: {reasons}",
            kind="; ".join(kinds) or f"fewer than {MIN_BUDGETS} budgets",
        )
    log_c = np.log([f.budget for f in used])
    a, log_kn = np.polyfit(log_c, np.log([f.N_star for f in used]), 1)
    b, log_kd = np.polyfit(log_c, np.log([f.D_star for f in used]), 1)
    if len(used) == 2:
        problems.append("only 2 budgets in the exponent fit: the line goes exactly through them, no residual check")
    return IsoFLOPFit(
        budgets=fits,
        a=float(a),
        log_kN=float(log_kn),
        b=float(b),
        log_kD=float(log_kd),
        used=[f.budget for f in used],
        warnings=problems,
    )
