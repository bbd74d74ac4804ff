"""A whole scaling study from a Table: IsoFLOP exponents, frontiers, the parametric law, the compute multiplier
and the ratio of optimal sizes, each with bootstrap intervals, as one JSON-serialisable dict.

Judgement calls, all reported in the output:
- the frontier is fitted to the IsoFLOP vertices (C, L*) when an IsoFLOP fit exists, else to the lowest loss of
  each budget, else to the Pareto front of (C, loss);
- `frontier="auto"` fits E only with >= 5 frontier points (3 parameters need spare degrees of freedom),
  the pure power law otherwise;
- bootstrap resamples are stratified by (objective, budget), so every refit sees every budget; a refit keeps the
  full-data choices (frontier source and form) so the interval measures noise, not a change of method;
- parametric bootstrap refits start from the full-data optimum (`parametric_refit="warm"`, with the tight L-BFGS-B
  tolerances of parametric.py: their 95% intervals covered the truth in 59 of 60 parameter checks on synthetic
  data), or from it plus a coarse sub-grid of the specified starts ("coarse"), or from the full grid ("grid");
- `curves`: N*(C), D*(C), L*(C) and k(C) evaluated on one log grid of C from the smallest budget to `extrapolate`
  times the largest, with pointwise percentile bands from the same bootstrap refits (the plots draw these).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from llada_lightning.scaling.bootstrap import bootstrap
from llada_lightning.scaling.collect import Table
from llada_lightning.scaling.frontier import ALPHA_MAX, Frontier, fit_frontier
from llada_lightning.scaling.isoflop import IsoFLOPFit, fit_isoflop, fit_parabola, group_budgets
from llada_lightning.scaling.multiplier import compute_multiplier, optimal_size_ratio
from llada_lightning.scaling.parametric import fit_parametric

MIN_PARAMETRIC_POINTS = 10
MIN_IRREDUCIBLE_POINTS = 5  # frontier="auto": fit E only with this many frontier points
ALPHA_FLAT = 1e-3  # a frontier exponent at or below this is flat: 10x the compute buys < 0.25% of loss
EDGE_FRACTION = 0.1  # warn when a used vertex lies this close (fraction of the grid's log span) to either end

# A coarse sub-grid of the specified starts, used (with the full-data optimum) for parametric bootstrap refits.
COARSE_STARTS = np.array(
    list(itertools.product((5.0, 10.0, 20.0), (5.0, 10.0, 20.0), (0.0, 1.0), (0.5, 1.0), (0.5, 1.0)))
)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class _Points:
    """Usable points of one objective as arrays."""

    def __init__(self, table: Table):
        self.budget = table.column("budget")
        self.N = table.column("N")
        self.D = table.column("D")
        self.C = table.column("C")
        self.loss = table.column("loss")

    def arrays(self) -> dict[str, np.ndarray]:
        return {"budget": self.budget, "N": self.N, "D": self.D, "C": self.C, "loss": self.loss}


def _budget_labels(budget: np.ndarray) -> np.ndarray:
    labels = np.full(len(budget), -1.0)
    ok = np.isfinite(budget) & (budget > 0)
    if ok.any():
        labels[ok] = group_budgets(budget[ok])
    return labels


def _isoflop(budget, N, loss, D) -> IsoFLOPFit:
    ok = np.isfinite(budget) & np.isfinite(N) & (N > 0)
    if not ok.any():
        raise ValueError("no point has a FLOP budget: an IsoFLOP fit needs runs launched with train.flops_budget")
    tokens = D[ok] if np.all(np.isfinite(D[ok]) & (D[ok] > 0)) else None
    return fit_isoflop(budget[ok], N[ok], loss[ok], tokens)


def _frontier_points(source: str, budget, N, loss, D, C) -> tuple[np.ndarray, np.ndarray]:
    if source == "isoflop_vertex":
        v = _isoflop(budget, N, loss, D).vertices()
        return v["C"], v["L_star"]
    if source == "budget_minimum":
        labels = _budget_labels(budget)
        keys = np.unique(labels[labels > 0])
        return keys, np.array([loss[labels == k].min() for k in keys])
    # Pareto front: the points no cheaper point beats
    ok = np.isfinite(C) & (C > 0)
    order = np.argsort(C[ok])
    c, y = C[ok][order], loss[ok][order]
    keep = y < np.minimum.accumulate(np.concatenate([[np.inf], y[:-1]]))
    return c[keep], y[keep]


def _choose_frontier_source(p: _Points, iso: IsoFLOPFit | None) -> str:
    if iso is not None:
        return "isoflop_vertex"
    labels = _budget_labels(p.budget)
    if len(np.unique(labels[labels > 0])) >= 2:
        return "budget_minimum"
    return "pareto"


def _fit_frontier_from(source: str, irreducible: bool, **arrays) -> Frontier:
    c, y = _frontier_points(source, **arrays)
    return fit_frontier(c, y, irreducible=irreducible)


def _bootstrap_or_warn(warnings: list[str], what: str, fn, data, **kwargs):
    """`bootstrap`, or None with a warning when every refit fails (the full-data fit still stands)."""
    try:
        return bootstrap(fn, data, **kwargs)
    except ValueError as err:
        warnings.append(f"{what}: no bootstrap interval: {str(err).splitlines()[0]}")
        return None


def _interval(res, names) -> dict:
    return {k: [res.low[k], res.high[k]] for k in names}


def curve_grid(table: Table, extrapolate: float, n_points: int) -> np.ndarray:
    """Log-spaced C from the smallest budget (or compute) of `table` to `extrapolate` x the largest."""
    c = table.column("budget")
    c = c[np.isfinite(c) & (c > 0)]
    if not len(c):
        c = table.column("C")
        c = c[np.isfinite(c) & (c > 0)]
    if not len(c):
        return np.empty(0)
    return np.logspace(np.log10(c.min()), np.log10(c.max() * max(extrapolate, 1.0)), n_points)


def _curve(grid, estimate, res, key: str, names: tuple[str, str, str]) -> dict:
    """One curve over `grid`: the full-data estimate and, with a bootstrap result, its pointwise band."""
    out = {"C": grid, names[0]: estimate}
    if res is not None:
        out[names[1]], out[names[2]] = res.low[key], res.high[key]
    return out


def _parabolas(p: _Points) -> list[dict]:
    """Each budget's parabola (those with >= 3 sizes), kept for the record when no exponent fit is possible."""
    labels = _budget_labels(p.budget)
    out = []
    for label in np.unique(labels[labels > 0]):
        sel = labels == label
        tokens = p.D[sel] if np.all(np.isfinite(p.D[sel]) & (p.D[sel] > 0)) else None
        try:
            out.append(fit_parabola(float(label), p.N[sel], p.loss[sel], tokens).to_dict())
        except ValueError:
            continue
    return out


def _section_isoflop(p: _Points, n_bootstrap, seed, level, warnings, grid) -> tuple[dict, IsoFLOPFit | None]:
    try:
        iso = _isoflop(p.budget, p.N, p.loss, p.D)
    except ValueError as err:
        warnings.append(f"isoflop: {err}")
        return {"error": str(err), "budgets": _parabolas(p)}, None
    warnings.extend(f"isoflop: {w}" for w in iso.warnings)
    for f in iso.budgets:  # an off-centre grid biases the parabola's vertex (arXiv 2603.22339; SPEC 6)
        if f.usable() and min(f.log10_below, f.log10_above) < EDGE_FRACTION * f.log10_span:
            warnings.append(
                f"isoflop: budget {f.budget:.3g}: the vertex N*={f.N_star:.3g} lies in the outer "
                f"{EDGE_FRACTION:.0%} of the sampled sizes (off-centre grid: N* is biased); centre the grid on it"
            )
    out = iso.to_dict()
    res = None
    if n_bootstrap > 0:
        ok = np.isfinite(p.budget)

        def fn(budget, N, loss, D):
            f = _isoflop(budget, N, loss, D)
            return {"a": f.a, "b": f.b, "N_curve": f.predict_n_opt(grid), "D_curve": f.predict_d_opt(grid)}

        res = _bootstrap_or_warn(
            warnings,
            "isoflop",
            fn,
            (p.budget[ok], p.N[ok], p.loss[ok], p.D[ok]),
            n_resamples=n_bootstrap,
            seed=seed,
            level=level,
            strata=_budget_labels(p.budget[ok]),
        )
        if res is not None:
            out["interval"] = _interval(res, ("a", "b"))
            out["bootstrap"] = {"n_ok": res.n_ok, "n_failed": res.n_failed, "failures": res.failures}
    if len(grid):
        out["curves"] = {
            "N_star": _curve(grid, iso.predict_n_opt(grid), res, "N_curve", ("N_star", "low", "high")),
            "D_star": _curve(grid, iso.predict_d_opt(grid), res, "D_curve", ("D_star", "low", "high")),
        }
    return out, iso


def _section_frontier(p: _Points, iso, mode, n_bootstrap, seed, level, warnings, grid) -> tuple[dict, tuple | None]:
    source = _choose_frontier_source(p, iso)
    arrays = {"budget": p.budget, "N": p.N, "loss": p.loss, "D": p.D, "C": p.C}
    c, y = _frontier_points(source, **arrays)
    irreducible = {"auto": len(c) >= MIN_IRREDUCIBLE_POINTS, "irreducible": True, "power": False}[mode]
    if source != "isoflop_vertex":
        warnings.append(
            f"frontier: fitted to the {source.replace('_', ' ')} points (no IsoFLOP vertices), which lie above the "
            "true frontier wherever the sizes miss the optimum"
        )
    if mode == "auto" and not irreducible:
        warnings.append(f"frontier: only {len(c)} frontier points: pure power law (E = 0) instead of E + A C^-alpha")
    try:
        fr = fit_frontier(c, y, irreducible=irreducible)
    except ValueError as err:
        warnings.append(f"frontier: {err}")
        return {"error": str(err), "source": source}, None
    if fr.alpha <= ALPHA_FLAT or fr.alpha >= ALPHA_MAX * (1 - 1e-6):
        warnings.append(
            f"frontier: alpha = {fr.alpha:.3g} (<= {ALPHA_FLAT:g}, or at the fit's bound {ALPHA_MAX:g}): the loss "
            "does not fall with compute as a power law here, so k(C) and extrapolations from it mean nothing"
        )
    out = {
        "source": source,
        "irreducible": irreducible,
        **fr.params(),
        "n_points": fr.n_points,
        "rss_log": fr.rss_log,
        "points": {"C": c, "L": y},
    }
    need = MIN_IRREDUCIBLE_POINTS if irreducible else 3
    if len(c) >= need:  # held-out check: fit without the largest compute, predict it
        i = int(np.argmax(c))
        try:
            held = fit_frontier(np.delete(c, i), np.delete(y, i), irreducible=irreducible)
            pred = float(held.predict(c[i]))
            out["holdout"] = {"C": c[i], "L": y[i], "predicted": pred, "rel_error": (pred - y[i]) / y[i]}
        except ValueError as err:
            out["holdout"] = {"error": str(err)}
    res = None
    if n_bootstrap > 0:
        names = ("E", "A", "log_A", "alpha")

        def fn(**a):
            f = _fit_frontier_from(source, irreducible, **a)
            return {**f.params(), "L_curve": f.predict(grid)}

        res = _bootstrap_or_warn(
            warnings,
            "frontier",
            fn,
            arrays,
            n_resamples=n_bootstrap,
            seed=seed,
            level=level,
            strata=_budget_labels(p.budget),
        )
        if res is not None:
            out["interval"] = _interval(res, names)
            out["bootstrap"] = {"n_ok": res.n_ok, "n_failed": res.n_failed, "failures": res.failures}
    if len(grid):
        out["curves"] = {"L_star": _curve(grid, fr.predict(grid), res, "L_curve", ("L_star", "low", "high"))}
    return out, (source, irreducible, fr)


def _section_parametric(p: _Points, n_bootstrap, seed, level, starts, workers, refit, warnings) -> dict:
    ok = np.isfinite(p.N) & np.isfinite(p.D) & np.isfinite(p.loss) & (p.N > 0) & (p.D > 0)
    if ok.sum() < MIN_PARAMETRIC_POINTS:
        msg = f"only {int(ok.sum())} points with N and D; the 5-parameter law needs >= {MIN_PARAMETRIC_POINTS}"
        warnings.append(f"parametric: {msg}")
        return {"error": msg}
    n, d, y = p.N[ok], p.D[ok], p.loss[ok]
    try:
        fit = fit_parametric(n, d, y, starts=starts, workers=workers)
    except ValueError as err:
        warnings.append(f"parametric: {err}")
        return {"error": str(err)}
    out = {
        **fit.params(),
        "objective": fit.objective,
        "n_points": fit.n_points,
        "n_starts": fit.n_starts,
        "n_finite": fit.n_finite,
        "best_start": list(fit.best_start),
        "message": fit.message,
        "a_implied": fit.beta / (fit.alpha + fit.beta),  # N_opt ~ C^a from the law itself
    }
    if n_bootstrap > 0:
        refit_starts = {"warm": fit.theta, "coarse": np.vstack([fit.theta, COARSE_STARTS]), "grid": None}[refit]
        res = _bootstrap_or_warn(
            warnings,
            "parametric",
            lambda n, d, y: fit_parametric(n, d, y, starts=refit_starts).params(),
            (n, d, y),
            n_resamples=n_bootstrap,
            seed=seed,
            level=level,
            strata=_budget_labels(p.budget[ok]),
        )
        if res is not None:
            out["interval"] = _interval(res, ("E", "A", "B", "alpha", "beta"))
            out["bootstrap"] = {
                "n_ok": res.n_ok,
                "n_failed": res.n_failed,
                "failures": res.failures,
                "refit_starts": refit,
            }
    return out


def _section_comparison(table, mdm, arm, fronts, isos, compute, n_bootstrap, seed, level, warnings, grid) -> dict:
    (src_m, irr_m, fr_m), (src_a, irr_a, fr_a) = fronts[mdm], fronts[arm]
    cs = np.union1d(_frontier_c(table, mdm, src_m), _frontier_c(table, arm, src_a))  # the sweep's budgets
    if compute is not None:
        cs = np.union1d(cs, np.asarray(compute, dtype=np.float64))
    out: dict = {"mdm": mdm, "arm": arm, "compute": cs, "k": compute_multiplier(fr_m, fr_a, cs)}
    have_ratio = isos.get(mdm) is not None and isos.get(arm) is not None
    if have_ratio:
        out["optimal_size_ratio"] = optimal_size_ratio(isos[mdm], isos[arm], cs)
    if np.isnan(out["k"]).any():
        warnings.append("compute multiplier: NaN where the ARM's loss is at or below the MDM's fitted E (unreachable)")
    if n_bootstrap > 0:
        rows = table.select(objective=mdm).rows + table.select(objective=arm).rows
        both = Table(rows)
        is_mdm = both.column("objective") == mdm
        p = _Points(both)
        strata = np.array([f"{o}|{b}" for o, b in zip(is_mdm, _budget_labels(p.budget), strict=True)])

        def fn(is_mdm, budget, N, loss, D, C):
            fr = {}
            iso = {}
            for name, sel, src, irr in ((mdm, is_mdm, src_m, irr_m), (arm, ~is_mdm, src_a, irr_a)):
                arrays = {"budget": budget[sel], "N": N[sel], "loss": loss[sel], "D": D[sel], "C": C[sel]}
                fr[name] = _fit_frontier_from(src, irr, **arrays)
                if have_ratio:
                    iso[name] = _isoflop(arrays["budget"], arrays["N"], arrays["loss"], arrays["D"])
            q = {"k": compute_multiplier(fr[mdm], fr[arm], cs), "k_curve": compute_multiplier(fr[mdm], fr[arm], grid)}
            if have_ratio:
                q["optimal_size_ratio"] = optimal_size_ratio(iso[mdm], iso[arm], cs)
                q["ratio_curve"] = optimal_size_ratio(iso[mdm], iso[arm], grid)
            return q

        res = _bootstrap_or_warn(
            warnings,
            "compute multiplier",
            fn,
            (is_mdm, p.budget, p.N, p.loss, p.D, p.C),
            n_resamples=n_bootstrap,
            seed=seed,
            level=level,
            strata=strata,
        )
        if res is not None:
            out["interval"] = _interval(res, [k for k in ("k", "optimal_size_ratio") if k in res.estimate])
            out["bootstrap"] = {"n_ok": res.n_ok, "n_failed": res.n_failed, "failures": res.failures}
    else:
        res = None
    if len(grid):
        out["curves"] = {"k": _curve(grid, compute_multiplier(fr_m, fr_a, grid), res, "k_curve", ("k", "low", "high"))}
        if have_ratio:
            ratio = optimal_size_ratio(isos[mdm], isos[arm], grid)
            out["curves"]["optimal_size_ratio"] = _curve(grid, ratio, res, "ratio_curve", ("ratio", "low", "high"))
    return out


def _frontier_c(table: Table, objective: str, source: str) -> np.ndarray:
    p = _Points(table.select(objective=objective))
    return _frontier_points(source, budget=p.budget, N=p.N, loss=p.loss, D=p.D, C=p.C)[0]


def fit_study(
    table: Table,
    *,
    n_bootstrap: int = 100,
    seed: int = 0,
    level: float = 0.95,
    mdm: str = "llada",
    arm: str = "arm",
    frontier: str = "auto",
    parametric: bool = True,
    parametric_starts: np.ndarray | None = None,
    parametric_workers: int = 1,
    parametric_refit: str = "warm",
    compute=None,
    extrapolate: float = 100.0,
    curve_points: int = 50,
) -> dict:
    """Fit everything the table supports, per objective, and compare `mdm` with `arm` when both are present.

    `frontier`: "auto" | "irreducible" (E + A C^-alpha) | "power" (E = 0). `parametric_starts` replaces the full
    start grid of the main parametric fit (None = the specified 4500 starts); `parametric_refit` ("warm", "coarse",
    "grid") the starts of its bootstrap refits. `compute`: extra C values at which to
    report k(C) and N*_MDM / N*_ARM (the sweep's own budgets are always included). `curves` (per section) evaluate
    the fitted laws on `curve_points` log-spaced C up to `extrapolate` x the largest budget, with bootstrap bands.
    Returns a JSON-serialisable dict (NaN and inf become None).
    """
    if frontier not in ("auto", "irreducible", "power"):
        raise ValueError(f"frontier must be 'auto', 'irreducible' or 'power', got {frontier!r}")
    if parametric_refit not in ("warm", "coarse", "grid"):
        raise ValueError(f"parametric_refit must be 'warm', 'coarse' or 'grid', got {parametric_refit!r}")
    warnings: list[str] = []
    usable = table.usable()
    excluded = table.excluded()
    if excluded:
        warnings.append(f"{len(excluded)} of {len(table)} runs excluded from fits (see 'excluded')")
    result: dict = {
        "n_runs": len(table),
        "status_counts": table.status_counts(),
        "excluded": excluded,
        "conventions": sorted({r["convention"] for r in usable.rows if r["convention"]}),
        "bootstrap": {"n_resamples": n_bootstrap, "seed": seed, "level": level},
        "objectives": {},
    }
    if len(result["conventions"]) > 1:
        warnings.append(f"runs mix FLOP conventions {result['conventions']}: pass collect(convention=...)")
    fronts: dict[str, tuple] = {}
    isos: dict[str, IsoFLOPFit | None] = {}
    grid = curve_grid(usable, extrapolate, curve_points) if curve_points > 0 else np.empty(0)
    for objective in usable.objectives():
        sub = usable.select(objective=objective)
        p = _Points(sub)
        w: list[str] = []
        section: dict = {"n_points": len(sub)}
        section["isoflop"], isos[objective] = _section_isoflop(p, n_bootstrap, seed, level, w, grid)
        section["frontier"], front = _section_frontier(p, isos[objective], frontier, n_bootstrap, seed, level, w, grid)
        if front is not None:
            fronts[objective] = front
        if parametric:
            section["parametric"] = _section_parametric(
                p, n_bootstrap, seed, level, parametric_starts, parametric_workers, parametric_refit, w
            )
        section["warnings"] = w
        warnings.extend(f"{objective}: {m}" for m in w)
        result["objectives"][objective] = section
    if mdm in fronts and arm in fronts:
        result["comparison"] = _section_comparison(
            usable, mdm, arm, fronts, isos, compute, n_bootstrap, seed, level, warnings, grid
        )
    elif mdm in result["objectives"] or arm in result["objectives"]:
        warnings.append(f"no comparison: needs frontier fits of both {mdm!r} and {arm!r}")
    result["warnings"] = warnings
    return _jsonable(result)
