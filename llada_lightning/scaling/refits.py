"""The machinery shared by the sections of a study (study.py, comparison.py): one objective's points as arrays,
the fit options, the full-data estimator that every bootstrap refit evaluates again (IsoFLOP fits over the same
budgets, frontier points from the same source), the choice of resampling scheme, the interval records' notes and
curves with their bands.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from llada_lightning.scaling.bootstrap import BootstrapResult, bootstrap
from llada_lightning.scaling.collect import Table
from llada_lightning.scaling.errors import FitError
from llada_lightning.scaling.frontier import Frontier
from llada_lightning.scaling.isoflop import (
    BUDGET_RTOL,
    IsoFLOPFit,
    distinct_sizes,
    fit_isoflop,
    fit_parabola,
    group_budgets,
)
from llada_lightning.scaling.requirements import MIN_MINIMUM_SIZES
from llada_lightning.scaling.resampling import ParabolaResiduals, loss_resampler

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def budget_labels(budget: np.ndarray) -> np.ndarray:
    labels = np.full(len(budget), np.nan)
    ok = np.isfinite(budget) & (budget > 0)
    if ok.any():
        labels[ok] = group_budgets(budget[ok])
    return labels


class Points:
    """Usable points of one objective as arrays, with their budget labels (NaN: no budget)."""

    def __init__(self, table: Table):
        self.budget = table.column("budget")
        self.N = table.column("N")
        self.D = table.column("D")
        self.C = table.column("C")
        self.loss = table.column("loss")
        self.labels = budget_labels(self.budget)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"budget": self.budget, "N": self.N, "loss": self.loss, "D": self.D, "C": self.C}

    def strata(self) -> np.ndarray:
        return np.where(np.isfinite(self.labels), self.labels, -1.0)


@dataclass
class Options:
    n_bootstrap: int
    seed: int
    level: float
    scheme: str
    progress: Progress | None

    def tick(self, stage: str) -> Callable[[int, int], None] | None:
        if self.progress is None:
            return None
        report = self.progress
        return lambda done, total: report(stage, done, total)


def isoflop_of(budget, N, loss, D, used=None) -> IsoFLOPFit:
    ok = np.isfinite(budget) & (budget > 0) & np.isfinite(N) & (N > 0)
    if not ok.any():
        raise FitError(
            "no point has a FLOP budget: an IsoFLOP fit needs runs launched with train.flops_budget",
            kind="no FLOP budget",
        )
    tokens = D[ok] if np.all(np.isfinite(D[ok]) & (D[ok] > 0)) else None
    return fit_isoflop(budget[ok], N[ok], loss[ok], tokens, budgets=used)


def frontier_points(source: str, used, budget, N, loss, D, C) -> tuple[np.ndarray, np.ndarray]:
    """The frontier's points: the IsoFLOP vertices of the budgets `used`, or (budget_minimum) the lowest loss of
    each budget that compares >= MIN_MINIMUM_SIZES sizes; a refit (`used` given) needs exactly those budgets."""
    if source == "isoflop_vertex":
        v = isoflop_of(budget, N, loss, D, used).vertices()
        return v["C"], v["L_star"]
    labels = budget_labels(budget)
    keys = [k for k in np.unique(labels[np.isfinite(labels)]) if distinct_sizes(N[labels == k]) >= MIN_MINIMUM_SIZES]
    if used is not None:  # a refit: the full-data fit's budgets, each still comparing sizes
        missing = [u for u in used if not any(abs(np.log(k / u)) <= BUDGET_RTOL for k in keys)]
        if missing:
            kind = f"budget {missing[0]:.3g}: fewer than {MIN_MINIMUM_SIZES} distinct sizes"
            raise FitError(f"refit of the budget minima: {kind}", kind=kind)
    return np.array(keys), np.array([loss[labels == k].min() for k in keys])


def run_bootstrap(fn, arrays: dict, opts: Options, stage: str, models: list, strata) -> BootstrapResult:
    """`bootstrap` with the study's scheme: residual (with `models`: (selector, ParabolaResiduals)) or pairs."""
    kwargs = {"n_resamples": opts.n_bootstrap, "seed": opts.seed, "level": opts.level, "progress": opts.tick(stage)}
    if opts.scheme == "residual" and models:
        problem = next((m.problem for _, m in models if m.problem), None)
        resample = loss_resampler(list(arrays.values()), list(arrays).index("loss"), models)
        return bootstrap(fn, arrays, resample=resample, scheme="residual", problem=problem, **kwargs)
    return bootstrap(fn, arrays, strata=strata, scheme="pairs within (objective, budget)", **kwargs)


def bootstrap_info(res: BootstrapResult, models: list) -> dict:
    out = res.summary()
    if res.scheme == "residual":
        out["residuals"] = {name: m.describe() for name, m in models}
    return out


def note_intervals(warnings: list[str], what: str, records: dict) -> None:
    """One warning per reason an interval of the section is unreliable, and one for failed refits in reliable ones
    (too few resamples is said once for the whole study)."""
    unreliable: dict[str, list[str]] = {}
    failed: dict[str, list[str]] = {}
    for name, rec in records.items():
        recs = rec if isinstance(rec, list) else [rec]
        bad = next((r for r in recs if not r["reliable"]), None)
        worst = max(recs, key=lambda r: r["n_failed"])
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(worst["failures"].items(), key=lambda kv: -kv[1]))
        if bad is not None and bad["problem_kind"] != "too few resamples":
            text = f"{100 * bad['level']:g}% interval unreliable: {bad['problem']}"
            if bad["problem_kind"] == "failed refits":
                text += f" ({kinds})"
            unreliable.setdefault(text, []).append(name)
        if bad is None and worst["n_failed"]:
            failed.setdefault(
                f"{worst['n_failed']} of {worst['n_resamples']} refits failed ({kinds}), counted as unbounded outcomes",
                [],
            ).append(name)
    for text, names in (*unreliable.items(), *failed.items()):
        warnings.append(f"{what}: {', '.join(names)}: {text}")


def pinned_at_zero(rec: dict, zero_below: float, name: str) -> dict:
    """A reliable interval of a parameter bounded below by 0 whose every refit lies at that bound (below
    `zero_below`) has no width to report: it is unreliable, with the reason, rather than printed as [0, 0]."""
    if rec["reliable"] and rec["high"] is not None and rec["high"] < zero_below:
        rec = {**rec, "low": None, "high": None, "reliable": False, "problem_kind": "at bound"}
        rec["problem"] = f"every refit puts {name} at its bound 0 (below {zero_below:.3g}): no interval to report"
    return rec


def curve_grid(table: Table, extrapolate: float, n_points: int) -> np.ndarray:
    """Log-spaced C from the smallest FLOP budget of `table` to `extrapolate` x the largest (empty: no budget)."""
    c = table.column("budget")
    c = c[np.isfinite(c) & (c > 0)]
    if not len(c):
        return np.empty(0)
    return np.logspace(np.log10(c.min()), np.log10(c.max() * max(extrapolate, 1.0)), n_points)


def curve(grid, estimate, res: BootstrapResult | None, key: str, name: str) -> dict:
    """One curve over `grid`: the full-data estimate and, with a bootstrap result, its pointwise band."""
    out = {"C": grid, name: estimate}
    if res is not None:
        out.update(res.band(key))
    return out


def parabolas(p: Points) -> list[dict]:
    """Each budget's parabola (those with >= 3 sizes), kept for the record when no exponent fit is possible."""
    out = []
    for label in np.unique(p.labels[np.isfinite(p.labels)]):
        sel = p.labels == label
        tokens = p.D[sel] if np.all(np.isfinite(p.D[sel]) & (p.D[sel] > 0)) else None
        try:
            out.append(fit_parabola(float(label), p.N[sel], p.loss[sel], tokens).to_dict())
        except ValueError:
            continue
    return out


def residual_model(p: Points, level: float, used) -> ParabolaResiduals:
    """The residual model of the fit over the budgets `used` (only their parabolas give residuals)."""
    return ParabolaResiduals(p.labels, p.N, p.loss, level, budgets=used)


@dataclass
class Front:
    source: str
    irreducible: bool
    fit: Frontier
    used: list[float] | None  # the IsoFLOP budgets behind the vertices
