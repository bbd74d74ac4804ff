"""The comparison of the MDM with the ARM: the compute multiplier k(C) with L_MDM(k C) = L_ARM(C) and the ratio of
compute-optimal sizes N*_MDM / N*_ARM, at the sweep's budgets and along the curve grid, with bootstrap intervals
from refits of both objectives at once (each with its own residuals, or pairs within (objective, budget)).
"""

from __future__ import annotations

import numpy as np

from llada_lightning.scaling.collect import Table
from llada_lightning.scaling.frontier import fit_frontier
from llada_lightning.scaling.multiplier import compute_multiplier, optimal_size_ratio
from llada_lightning.scaling.refits import (
    Front,
    Options,
    Points,
    bootstrap_info,
    curve,
    frontier_points,
    isoflop_of,
    note_intervals,
    residual_model,
    run_bootstrap,
)


def section_comparison(table, mdm, arm, fronts, isos, compute, opts: Options, warnings, grid) -> dict:
    fm, fa = fronts[mdm], fronts[arm]
    cs = np.union1d(frontier_compute(table, mdm, fm), frontier_compute(table, arm, fa))  # the sweep's budgets
    if compute is not None:
        cs = np.union1d(cs, np.asarray(compute, dtype=np.float64))
    k = compute_multiplier(fm.fit, fa.fit, cs, unreachable=np.inf)
    out: dict = {"mdm": mdm, "arm": arm, "compute": cs, "k": k}
    have_ratio = isos.get(mdm) is not None and isos.get(arm) is not None
    if have_ratio:
        out["optimal_size_ratio"] = optimal_size_ratio(isos[mdm], isos[arm], cs)
    power = [name for name, f in ((mdm, fm), (arm, fa)) if not f.irreducible]
    if power:
        out["assumes"] = f"E = 0 for {', '.join(power)} (pure power-law frontier)"
        warnings.append(
            f"compute multiplier: the frontier of {' and '.join(power)} is a pure power law (E = 0): k(C) and its "
            "intervals assume it, and measure the noise, not the error of that assumption (where the loss bends "
            "towards an irreducible E, k from power laws can be off by a factor of 2 within the sampled budgets); "
            "5 or more budgets let the frontier fit E"
        )
    if np.isinf(k).any():
        warnings.append(
            "compute multiplier: k = inf (printed as such) where the ARM's loss is at or below the MDM's fitted E: "
            "the MDM never reaches it"
        )
    res = None
    if opts.n_bootstrap > 0:
        rows = table.select(objective=mdm).rows + table.select(objective=arm).rows
        both = Table(rows)
        is_mdm = both.column("objective") == mdm
        p = Points(both)
        p_m, p_a = Points(table.select(objective=mdm)), Points(table.select(objective=arm))
        strata = np.array([f"{o}|{b}" for o, b in zip(is_mdm, p.strata(), strict=True)])
        arrays = {"is_mdm": is_mdm, **p.arrays()}

        def fn(is_mdm, budget, N, loss, D, C):
            fr, iso = {}, {}
            for name, sel, front in ((mdm, is_mdm, fm), (arm, ~is_mdm, fa)):
                a = {"budget": budget[sel], "N": N[sel], "loss": loss[sel], "D": D[sel], "C": C[sel]}
                fr[name] = fit_frontier(*frontier_points(front.source, front.used, **a), irreducible=front.irreducible)
                if have_ratio:
                    iso[name] = isoflop_of(a["budget"], a["N"], a["loss"], a["D"], isos[name].used)
            q = {
                "k": compute_multiplier(fr[mdm], fr[arm], cs, unreachable=np.inf),
                "k_curve": compute_multiplier(fr[mdm], fr[arm], grid, unreachable=np.inf),
            }
            if have_ratio:
                q["optimal_size_ratio"] = optimal_size_ratio(iso[mdm], iso[arm], cs)
                q["ratio_curve"] = optimal_size_ratio(iso[mdm], iso[arm], grid)
            return q

        vertex_based = fm.source == fa.source == "isoflop_vertex"
        models = (
            [(is_mdm, residual_model(p_m, opts.level, fm.used)), (~is_mdm, residual_model(p_a, opts.level, fa.used))]
            if vertex_based
            else []
        )
        res = run_bootstrap(fn, arrays, opts, "comparison", models, strata)
        out["interval"] = {key: res.record(key) for key in ("k", "optimal_size_ratio") if key in res.estimate}
        out["bootstrap"] = bootstrap_info(res, [(mdm, models[0][1]), (arm, models[1][1])] if models else [])
        note_intervals(warnings, "compute multiplier", out["interval"])
    if len(grid):
        k_grid = compute_multiplier(fm.fit, fa.fit, grid, unreachable=np.inf)
        out["curves"] = {"k": curve(grid, k_grid, res, "k_curve", "k")}
        if have_ratio:
            ratio = optimal_size_ratio(isos[mdm], isos[arm], grid)
            out["curves"]["optimal_size_ratio"] = curve(grid, ratio, res, "ratio_curve", "ratio")
    return out


def frontier_compute(table: Table, objective: str, front: Front) -> np.ndarray:
    p = Points(table.select(objective=objective))
    return frontier_points(front.source, front.used, **p.arrays())[0]
