"""A whole scaling study from a Table: IsoFLOP exponents, frontiers, the parametric law, the compute multiplier
and the ratio of optimal sizes, each with bootstrap intervals, as one JSON-serialisable dict.

Judgement calls, all reported in the output:
- the frontier is fitted to the IsoFLOP vertices (C, L*) when an IsoFLOP fit exists, else to the lowest loss of
  each budget (warned: those lie above the frontier); runs without a FLOP budget give no frontier and no k(C);
- `frontier="auto"` fits E only with MIN_IRREDUCIBLE_POINTS frontier points, the pure power law otherwise;
- intervals (bootstrap.py: percentile, failed refits counted as unbounded outcomes, `reliable` or not with the
  reason) come from refits that evaluate the full-data estimator: the same budgets, frontier source and form;
- `bootstrap_scheme="residual"` (default): the IsoFLOP-derived fits (exponents, frontier from vertices, k(C), the
  size ratio) resample the parabolas' residuals over the fixed design (resampling.py); `"pairs"` resamples the
  runs within each (objective, budget). The parametric law and a frontier of budget minima always use pairs;
- parametric bootstrap refits start from the full-data optimum (`parametric_refit="warm"`, with the tight L-BFGS-B
  tolerances of parametric.py), or from it plus a coarse sub-grid of the specified starts ("coarse"), or from the
  full grid ("grid");
- `curves`: N*(C), D*(C), L*(C) and k(C) evaluated on one log grid of C from the smallest budget to `extrapolate`
  times the largest, with pointwise bands from the same bootstrap refits (the plots draw these).
"""

from __future__ import annotations

import itertools

import numpy as np

from llada_lightning.scaling.bootstrap import bootstrap
from llada_lightning.scaling.collect import Table
from llada_lightning.scaling.comparison import section_comparison
from llada_lightning.scaling.frontier import ALPHA_MAX, fit_frontier
from llada_lightning.scaling.isoflop import IsoFLOPFit
from llada_lightning.scaling.parametric import fit_parametric
from llada_lightning.scaling.refits import (
    Front,
    Options,
    Points,
    Progress,
    bootstrap_info,
    curve,
    curve_grid,
    frontier_points,
    isoflop_of,
    jsonable,
    note_intervals,
    parabolas,
    pinned_at_zero,
    residual_model,
    run_bootstrap,
)
from llada_lightning.scaling.requirements import (
    MIN_FRONTIER_POINTS,
    MIN_IRREDUCIBLE_POINTS,
    MIN_MINIMUM_SIZES,
    MIN_PARAMETRIC_POINTS,
    NEGLIGIBLE,
    min_resamples,
)

ALPHA_FLAT = 1e-3  # a frontier exponent at or below this is flat: 10x the compute buys < 0.25% of loss
EDGE_FRACTION = 0.1  # warn when a used vertex lies this close (fraction of the grid's log span) to either end
SCHEMES = ("residual", "pairs")

# A coarse sub-grid of the specified starts, used (with the full-data optimum) for parametric bootstrap refits.
COARSE_STARTS = np.array(
    list(itertools.product((5.0, 10.0, 20.0), (5.0, 10.0, 20.0), (0.0, 1.0), (0.5, 1.0), (0.5, 1.0)))
)

__all__ = ["COARSE_STARTS", "SCHEMES", "curve_grid", "fit_study"]


def _section_isoflop(name, p: Points, opts: Options, warnings, grid) -> tuple[dict, IsoFLOPFit | None]:
    try:
        iso = isoflop_of(p.budget, p.N, p.loss, p.D)
    except ValueError as err:
        warnings.append(f"isoflop: {err}")
        return {"error": str(err), "budgets": parabolas(p)}, None
    warnings.extend(f"isoflop: {w}" for w in iso.warnings)
    for f in iso.budgets:  # an off-centre grid biases the parabola's vertex (arXiv 2603.22339)
        if f.usable() and min(f.log10_below, f.log10_above) < EDGE_FRACTION * f.log10_span:
            warnings.append(
                f"isoflop: budget {f.budget:.3g}: the vertex N*={f.N_star:.3g} lies in the outer "
                f"{EDGE_FRACTION:.0%} of the sampled sizes (off-centre grid: N* is biased); centre the grid on it"
            )
    out = iso.to_dict()
    res = None
    if opts.n_bootstrap > 0:
        used = iso.used

        def fn(budget, N, loss, D, C):
            f = isoflop_of(budget, N, loss, D, used)
            return {"a": f.a, "b": f.b, "N_curve": f.predict_n_opt(grid), "D_curve": f.predict_d_opt(grid)}

        models = [(slice(None), residual_model(p, opts.level, used))]
        res = run_bootstrap(fn, p.arrays(), opts, f"{name} isoflop", models, p.strata())
        out["interval"] = {k: res.record(k) for k in ("a", "b")}
        out["bootstrap"] = bootstrap_info(res, [(name, m) for _, m in models])
        note_intervals(warnings, "isoflop", out["interval"])
    if len(grid):
        out["curves"] = {
            "N_star": curve(grid, iso.predict_n_opt(grid), res, "N_curve", "N_star"),
            "D_star": curve(grid, iso.predict_d_opt(grid), res, "D_curve", "D_star"),
        }
    return out, iso


def _section_frontier(name, p: Points, iso, mode, opts: Options, warnings, grid) -> tuple[dict, Front | None]:
    if not np.isfinite(p.labels).any():
        msg = "no run has a FLOP budget: a frontier (and k(C)) needs runs launched with train.flops_budget"
        warnings.append(f"frontier: {msg}")
        return {"error": msg}, None
    source = "isoflop_vertex" if iso is not None else "budget_minimum"
    used = iso.used if iso is not None else None
    c, y = frontier_points(source, used, **p.arrays())
    used = list(c) if used is None else used  # refits use the same budgets
    irreducible = {"auto": len(c) >= MIN_IRREDUCIBLE_POINTS, "irreducible": True, "power": False}[mode]
    if source != "isoflop_vertex":
        skipped = int(np.unique(p.labels[np.isfinite(p.labels)]).size) - len(c)
        warnings.append(
            "frontier: fitted to the lowest loss of each budget (no IsoFLOP vertices), which lies above the true "
            "frontier wherever the sizes miss the optimum"
            + (f"; {skipped} budgets with fewer than {MIN_MINIMUM_SIZES} sizes left out" if skipped else "")
        )
    if mode == "auto" and not irreducible and len(c) >= MIN_FRONTIER_POINTS:
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
        "at_bound": fr.at_bound(),
        "n_points": fr.n_points,
        "rss_log": fr.rss_log,
        "points": {"C": c, "L": y},
    }
    need = (MIN_IRREDUCIBLE_POINTS if irreducible else MIN_FRONTIER_POINTS) + 1
    if len(c) >= need:  # held-out check: fit without the largest compute, predict it
        i = int(np.argmax(c))
        try:
            held = fit_frontier(np.delete(c, i), np.delete(y, i), irreducible=irreducible)
            pred = float(held.predict(c[i]))
            out["holdout"] = {"C": c[i], "L": y[i], "predicted": pred, "rel_error": (pred - y[i]) / y[i]}
        except ValueError as err:
            out["holdout"] = {"error": str(err)}
    res = None
    if opts.n_bootstrap > 0:

        def fn(**a):
            f = fit_frontier(*frontier_points(source, used, **a), irreducible=irreducible)
            return {**f.params(), "L_curve": f.predict(grid)}

        models = [(slice(None), residual_model(p, opts.level, used))] if source == "isoflop_vertex" else []
        res = run_bootstrap(fn, p.arrays(), opts, f"{name} frontier", models, p.strata())
        names = ("E", "A", "log_A", "alpha") if irreducible else ("A", "log_A", "alpha")
        out["interval"] = {k: res.record(k) for k in names}
        if irreducible:
            out["interval"]["E"] = pinned_at_zero(out["interval"]["E"], NEGLIGIBLE * float(np.min(y)), "E")
        out["bootstrap"] = bootstrap_info(res, [(name, m) for _, m in models])
        note_intervals(warnings, "frontier", out["interval"])
    if len(grid):
        out["curves"] = {"L_star": curve(grid, fr.predict(grid), res, "L_curve", "L_star")}
    return out, Front(source, irreducible, fr, used)


def _section_parametric(name, p: Points, opts: Options, starts, workers, refit, warnings) -> dict:
    ok = np.isfinite(p.N) & np.isfinite(p.D) & np.isfinite(p.loss) & (p.N > 0) & (p.D > 0)
    if ok.sum() < MIN_PARAMETRIC_POINTS:
        msg = f"only {int(ok.sum())} points with N and D; the 5-parameter law needs >= {MIN_PARAMETRIC_POINTS}"
        warnings.append(f"parametric: {msg}")
        return {"error": msg}
    n, d, y = p.N[ok], p.D[ok], p.loss[ok]
    try:
        fit = fit_parametric(n, d, y, starts=starts, workers=workers, progress=opts.tick(f"{name} parametric fit"))
    except ValueError as err:
        warnings.append(f"parametric: {err}")
        return {"error": str(err)}
    at_bound = fit.at_bound(n, d, y)
    out = {
        **fit.params(),
        "at_bound": at_bound,
        "loss_min": float(np.min(y)),
        "objective": fit.objective,
        "n_points": fit.n_points,
        "n_starts": fit.n_starts,
        "n_finite": fit.n_finite,
        "best_start": list(fit.best_start),
        "message": fit.message,
        "a_implied": fit.beta / (fit.alpha + fit.beta),  # N_opt ~ C^a from the law itself
    }
    if opts.n_bootstrap > 0:
        if refit == "warm" and at_bound:  # at a bound the optimum's basin is flat: warm refits barely move
            refit = "coarse"
            warnings.append(
                f"parametric: {', '.join(at_bound)} at its bound 0: bootstrap refits start from the optimum and the "
                "coarse start grid (a warm start alone stays stuck on the flat boundary)"
            )
        refit_starts = {"warm": fit.theta, "coarse": np.vstack([fit.theta, COARSE_STARTS]), "grid": None}[refit]
        res = bootstrap(
            lambda n, d, y: fit_parametric(n, d, y, starts=refit_starts).params(),
            (n, d, y),
            n_resamples=opts.n_bootstrap,
            seed=opts.seed,
            level=opts.level,
            strata=p.strata()[ok],
            scheme="pairs within budgets",
            progress=opts.tick(f"{name} parametric bootstrap"),
            workers=workers,  # its multi-start refits are the slow part of a study's fit
        )
        out["interval"] = {k: res.record(k) for k in ("E", "A", "B", "alpha", "beta")}
        for k in ("E", "A", "B"):
            out["interval"][k] = pinned_at_zero(out["interval"][k], NEGLIGIBLE * float(np.min(y)), k)
        out["bootstrap"] = {**res.summary(), "refit_starts": refit}
        note_intervals(warnings, "parametric", out["interval"])
    return out


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
    bootstrap_scheme: str = "residual",
    compute=None,
    extrapolate: float = 100.0,
    curve_points: int = 50,
    progress: Progress | None = None,
) -> dict:
    """Fit everything the table supports, per objective, and compare `mdm` with `arm` when both are present.

    `frontier`: "auto" | "irreducible" (E + A C^-alpha) | "power" (E = 0). `parametric_starts` replaces the full
    start grid of the main parametric fit (None = the specified 4500 starts); `parametric_refit` ("warm", "coarse",
    "grid") the starts of its bootstrap refits. `bootstrap_scheme`: "residual" or "pairs" (module docstring).
    `compute`: extra C values at which to report k(C) and N*_MDM / N*_ARM (the sweep's own budgets are always
    included). `curves` (per section) evaluate the fitted laws on `curve_points` log-spaced C up to `extrapolate`
    x the largest budget, with bootstrap bands. `progress(stage, done, total)` is told how long fits are going.
    Returns a JSON-serialisable dict (NaN and inf become None).
    """
    if frontier not in ("auto", "irreducible", "power"):
        raise ValueError(f"frontier must be 'auto', 'irreducible' or 'power', got {frontier!r}")
    if parametric_refit not in ("warm", "coarse", "grid"):
        raise ValueError(f"parametric_refit must be 'warm', 'coarse' or 'grid', got {parametric_refit!r}")
    if bootstrap_scheme not in SCHEMES:
        raise ValueError(f"bootstrap_scheme must be one of {SCHEMES}, got {bootstrap_scheme!r}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    opts = Options(n_bootstrap, seed, level, bootstrap_scheme, progress)
    warnings: list[str] = []
    usable = table.usable()
    excluded = table.excluded()
    if excluded:
        warnings.append(f"{len(excluded)} of {len(table)} runs excluded from fits (see 'excluded')")
    result: dict = {
        "n_runs": len(table),
        "status_counts": table.status_counts(),
        "reason_counts": table.reason_counts(),
        "input_notes": list(table.notes),
        "excluded": excluded,
        "conventions": sorted({r["convention"] for r in usable.rows if r["convention"]}),
        "bootstrap": {"n_resamples": n_bootstrap, "seed": seed, "level": level, "scheme": bootstrap_scheme},
        "objectives": {},
    }
    if len(result["conventions"]) > 1:
        warnings.append(f"runs mix FLOP conventions {result['conventions']}: pass collect(convention=...)")
    if 0 < n_bootstrap < min_resamples(level):
        warnings.append(
            f"{n_bootstrap} bootstrap resamples: a {100 * level:g}% percentile interval needs >= "
            f"{min_resamples(level)} (2 in each tail), so every interval is unreliable; use --bootstrap 200 or more"
        )
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # an extreme law gives inf/NaN, reported
        fronts: dict[str, Front] = {}
        isos: dict[str, IsoFLOPFit | None] = {}
        grid = curve_grid(usable, extrapolate, curve_points) if curve_points > 0 else np.empty(0)
        for objective in usable.objectives():
            sub = usable.select(objective=objective)
            p = Points(sub)
            w: list[str] = []
            section: dict = {"n_points": len(sub)}
            no_budget = int((~np.isfinite(p.labels)).sum())
            if 0 < no_budget < len(sub):
                w.append(
                    f"{no_budget} of {len(sub)} points have no FLOP budget (launched by step count, or a blank budget "
                    "cell): they enter only the parametric law, not the IsoFLOP fit, the frontier or k(C)"
                )
            section["isoflop"], isos[objective] = _section_isoflop(objective, p, opts, w, grid)
            section["frontier"], front = _section_frontier(objective, p, isos[objective], frontier, opts, w, grid)
            if front is not None:
                fronts[objective] = front
            if parametric:
                section["parametric"] = _section_parametric(
                    objective, p, opts, parametric_starts, parametric_workers, parametric_refit, w
                )
            section["warnings"] = w
            warnings.extend(f"{objective}: {m}" for m in w)
            result["objectives"][objective] = section
        if mdm in fronts and arm in fronts:
            result["comparison"] = section_comparison(usable, mdm, arm, fronts, isos, compute, opts, warnings, grid)
        elif mdm in result["objectives"] or arm in result["objectives"]:
            warnings.append(f"no comparison: needs frontier fits of both {mdm!r} and {arm!r}")
    result["warnings"] = warnings
    return jsonable(result)
