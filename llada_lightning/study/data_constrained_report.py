"""The analysis of the `data-constrained` design: loss against epochs of repeated data per unique-token budget U,
Muennighoff et al. 2023's law fitted to each objective (scaling/data_constrained.py) with bootstrap intervals, the
half-life of repeated data, and the critical compute per U at which LLaDA's compute-optimal loss falls below the
ARM's (Prabhudesai et al. 2025).

Writes `<study>/points.csv` (with U and epochs), `fit.json`, `plots/` (epochs: loss against epochs per U with the
fitted decay curves; repetition: R_D* and the half-life with intervals, and the critical compute per U; PNG, PDF
and the CSV of each) and `summary.txt`, whose numbers are all read from fit.json. The summary states whether the
CPU result has the published direction: diffusion's R_D* several times the ARM's (493.89 against 31.19,
Prabhudesai et al. 2025 Table 1) and the ARM ahead at one epoch.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from llada_lightning.study.data_constrained import DataConstrainedDesign
from llada_lightning.study.report import finish_report, study_table

PUBLISHED = {"llada": 493.89, "arm": 31.19}  # R_D*: Prabhudesai et al. 2025, Table 1 (diffusion, AR)
PARAMS = ("E", "A", "B", "alpha", "beta", "R_D_star", "R_N_star")


def _points(table, objective: str) -> dict[str, np.ndarray]:
    """The usable points of one objective that have a unique-token count (N, D, U, L, epochs)."""
    sub = table.usable().select(objective=objective)
    cols = {k: sub.column(k).astype(float) for k in ("N", "D", "U", "loss", "epochs")}
    keep = np.isfinite(cols["U"]) & (cols["U"] > 0)
    return {k: v[keep] for k, v in cols.items()}


def _fit_objective(p: dict[str, np.ndarray], *, n_bootstrap: int, seed: int, workers: int, stage1) -> tuple[dict, Any]:
    """The law, its intervals and the half-life of one objective; an `error` where the points cannot support it."""
    from llada_lightning.scaling import bootstrap_data_constrained, data_half_life, fit_data_constrained

    try:
        fit = fit_data_constrained(p["N"], p["D"], p["U"], p["loss"], stage1_starts=stage1, workers=workers)
    except ValueError as err:
        return {"error": str(err), "n_points": int(len(p["N"]))}, None
    out: dict[str, Any] = {"n_points": int(len(p["N"])), **fit.to_dict(), "half_life": data_half_life(fit)}
    if n_bootstrap > 0:
        res = bootstrap_data_constrained(
            p["N"],
            p["D"],
            p["U"],
            p["loss"],
            n_resamples=n_bootstrap,
            seed=seed,
            workers=workers,
            stage1_starts=stage1,
            full=fit,
        )
        out["interval"] = {k: res.record(k) for k in PARAMS}
        rd = out["interval"]["R_D_star"]  # the half-life is R_D* ln 2: a monotone map of the same refits
        out["interval"]["half_life"] = {
            **rd,
            "low": None if rd.get("low") is None else rd["low"] * math.log(2),
            "high": None if rd.get("high") is None else rd["high"] * math.log(2),
        }
        out["bootstrap"] = res.summary()
    return out, fit


def _one_epoch_order(table, objectives: list[str]) -> dict[str, Any]:
    """At one epoch of each (U, N): which objective's validation loss is lower, counted over the matched pairs."""
    if not {"llada", "arm"} <= set(objectives):
        return {}
    by = {}
    for obj in ("llada", "arm"):
        p = _points(table, obj)
        for n, u, e, loss in zip(p["N"], p["U"], p["epochs"], p["loss"], strict=True):
            if abs(e - 1.0) < 1e-6:
                by.setdefault((n, u), {})[obj] = loss
    pairs = [v for v in by.values() if len(v) == 2]
    ahead = sum(v["arm"] < v["llada"] for v in pairs)
    return {
        "pairs": len(pairs),
        "arm_ahead": int(ahead),
        "mean_gap": float(np.mean([v["llada"] - v["arm"] for v in pairs])) if pairs else None,
    }


def direction(fit: dict[str, Any]) -> dict[str, Any]:
    """Whether the result has the published direction: R_D*(LLaDA) several times R_D*(ARM) and the ARM ahead at one
    epoch (Prabhudesai et al. 2025)."""
    obj = fit["objectives"]
    lla, arm = obj.get("llada", {}), obj.get("arm", {})
    if "R_D_star" not in lla or "R_D_star" not in arm:
        return {"verdict": "not assessed: the law was not fitted for both objectives"}
    ratio = lla["R_D_star"] / arm["R_D_star"] if arm["R_D_star"] else math.inf
    lo_l = ((lla.get("interval") or {}).get("R_D_star") or {}).get("low")
    hi_a = ((arm.get("interval") or {}).get("R_D_star") or {}).get("high")
    separated = lo_l is not None and hi_a is not None and lo_l > hi_a
    order = fit.get("one_epoch", {})
    arm_ahead = bool(order.get("pairs")) and order["arm_ahead"] > order["pairs"] / 2
    several = ratio >= 2
    resolved = "resolved: the R_D* intervals are apart" if separated else "not resolved: the R_D* intervals overlap"
    verdict = (
        f"reproduces the published direction ({resolved})"
        if several and arm_ahead
        else "does not reproduce the published direction"
        if ratio <= 1 or not arm_ahead
        else "partly: R_D* is higher for LLaDA but not several times the ARM's"
    )
    return {
        "R_D_star_ratio": ratio,
        "intervals_separated": separated,
        "arm_ahead_at_one_epoch": arm_ahead,
        "verdict": verdict,
        "published_ratio": PUBLISHED["llada"] / PUBLISHED["arm"],
    }


# -- plots ----------------------------------------------------------------------------------------------------------
def _plot_epochs(table, fits: dict[str, Any], objectives: list[str], stem: Path) -> list[Path]:
    from llada_lightning.scaling.plots import FORMATS, pyplot, save_figure, write_plot_csv

    plt = pyplot()
    fig, axes = plt.subplots(1, len(objectives), figsize=(5.5 * len(objectives), 4.2), squeeze=False)
    rows = []
    for ax, obj in zip(axes[0], objectives, strict=True):
        p = _points(table, obj)
        fit = fits.get(obj)
        us = sorted(set(p["U"].tolist()))
        ns = sorted(set(p["N"].tolist()))
        cmap = plt.get_cmap("viridis")
        for i, n in enumerate(ns):
            color = cmap(i / max(len(ns) - 1, 1))
            for j, u in enumerate(us):
                sel = (p["N"] == n) & (p["U"] == u) & (p["epochs"] >= 1 - 1e-9)
                if p["D"][sel].max(initial=0) > u * 1.01 or sel.sum() > 1:  # the repeated runs of this U
                    marker = "os^vD"[j % 5]
                    e = p["epochs"][sel]
                    order = np.argsort(e)
                    ax.plot(e[order], p["loss"][sel][order], marker, color=color, ms=4, label=f"N={n:.3g}, U={u:.3g}")
                    grid = np.geomspace(1, max(float(e.max()), 1.0), 60)
                    fitted = (
                        fit.predict(np.full_like(grid, n), grid * u, np.full_like(grid, u)) if fit else grid * np.nan
                    )
                    ax.plot(grid, fitted, "-", color=color, lw=1, alpha=0.8)
                    for ee, dd, ll in zip(e, p["D"][sel], p["loss"][sel], strict=True):
                        rows.append(
                            {
                                "objective": obj,
                                "N": n,
                                "U": u,
                                "epochs": ee,
                                "D": dd,
                                "loss": ll,
                                "fitted": float(fit.predict(n, dd, u)) if fit else None,
                            }
                        )
        ax.set_xscale("log")
        ax.set_xlabel("epochs of the U unique tokens")
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title(f"{obj}: loss against repetition (lines: the fitted law)")
        ax.legend(fontsize=6, ncol=2)
    files = save_figure(fig, stem, FORMATS)
    plt.close(fig)
    files.append(
        write_plot_csv(stem.with_suffix(".csv"), ["objective", "N", "U", "epochs", "D", "loss", "fitted"], rows)
    )
    return files


def _plot_repetition(fit: dict[str, Any], stem: Path) -> list[Path]:
    from llada_lightning.scaling.plots import FORMATS, pyplot, save_figure, write_plot_csv

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = []
    names = [o for o, sec in fit["objectives"].items() if "R_D_star" in sec]
    for i, obj in enumerate(names):
        sec = fit["objectives"][obj]
        rec = (sec.get("interval") or {}).get("R_D_star") or {}
        lo, hi = rec.get("low"), rec.get("high")
        r = sec["R_D_star"]
        err = [[r - lo if lo is not None else 0], [hi - r if hi is not None else 0]]
        axes[0].errorbar([i], [r], yerr=np.clip(np.array(err, dtype=float), 0, None), fmt="o", capsize=4)
        rows.append({"quantity": "R_D_star", "objective": obj, "U": None, "value": r, "low": lo, "high": hi})
    axes[0].set_xticks(range(len(names)), names)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("R_D* (repetitions; 95% bootstrap)")
    axes[0].set_title("how long repeated data keeps its value")
    crit = fit.get("critical_compute") or {}
    us = [float(u) for u in crit]
    cs = [crit[u] for u in crit]
    finite = [(u, c) for u, c in zip(us, cs, strict=True) if c is not None and math.isfinite(c)]
    if finite:
        axes[1].plot([u for u, _ in finite], [c for _, c in finite], "o-")
    for u, c in zip(us, cs, strict=True):
        rows.append({"quantity": "critical_compute", "objective": "llada vs arm", "U": u, "value": c})
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("unique tokens U")
    axes[1].set_ylabel("critical compute C [FLOPs, 6N]")
    axes[1].set_title("compute beyond which LLaDA's optimal loss is lower")
    files = save_figure(fig, stem, FORMATS)
    plt.close(fig)
    files.append(write_plot_csv(stem.with_suffix(".csv"), ["quantity", "objective", "U", "value", "low", "high"], rows))
    return files


# -- summary --------------------------------------------------------------------------------------------------------
def _g(v: Any, fmt: str = ".3g") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _with_interval(sec: dict, key: str) -> str:
    rec = (sec.get("interval") or {}).get(key)
    value = _g(sec.get(key))
    if not rec:
        return value
    if not rec.get("reliable"):
        return f"{value} [unreliable: {rec.get('problem') or 'refits failed'}]"
    return f"{value} [{_g(rec.get('low'))}, {_g(rec.get('high'))}]"


def format_data_constrained_summary(fit: dict) -> str:
    lines = [
        f"Data-constrained study: {fit['n_runs']} runs; unique-token budgets U = "
        f"{', '.join(_g(float(u)) for u in fit['unique_tokens'])}; epochs {fit['epochs']}",
        "Law: L = E + A/N'^alpha + B/D'^beta, D' = U + U R_D* (1 - exp(-R_D/R_D*)) (Muennighoff et al. 2023, App. A),",
        "fitted per objective in two stages (single-epoch points, then R_D*, R_N*); 95% bootstrap intervals",
    ]
    for obj, sec in fit["objectives"].items():
        if "error" in sec:
            lines.append(f"  {obj}: not fitted: {sec['error']}")
            continue
        lines.append(
            f"  {obj:<6} {sec['n_points']} points: R_D* = {_with_interval(sec, 'R_D_star')}, "
            f"R_N* = {_with_interval(sec, 'R_N_star')}, half-life of repeated data {_with_interval(sec, 'half_life')} "
            f"repetitions; E = {_g(sec['E'])}, alpha = {_g(sec['alpha'])}, beta = {_g(sec['beta'])}"
        )
        for w in sec.get("warnings") or []:
            lines.append(f"         warning: {w}")
    excluded = fit.get("excluded") or []
    if excluded:
        lines.append(
            f"Left out of the fits: {len(excluded)} runs. A loss rising with repetition (overfitting) is what the law, "
            "monotone in D', cannot describe; runs above ln(vocab) + 1 count as diverged:"
        )
        lines.extend(
            f"  {r['objective']} {r['model']} U = {_g(r['U'])}, {_g(r['epochs'])} epochs: {r['status']} ({r['reason']})"
            for r in excluded
        )
    crit = fit.get("critical_compute") or {}
    if crit:
        lines.append("Critical compute (LLaDA's compute-optimal loss falls below the ARM's; Prabhudesai et al. 2025):")
        lines.extend(
            f"  U = {_g(float(u))}: "
            + (f"C = {_g(c)} FLOPs (6N)" if c is not None else "none in 1e15..1e27 FLOPs: LLaDA's stays above")
            for u, c in crit.items()
        )
    order = fit.get("one_epoch") or {}
    if order.get("pairs"):
        lines.append(
            f"At one epoch the ARM is ahead in {order['arm_ahead']} of {order['pairs']} matched (N, U) pairs "
            f"(mean LLaDA - ARM gap {_g(order['mean_gap'])} nats)"
        )
    d = fit.get("direction") or {}
    if "R_D_star_ratio" in d:
        lines.append(
            f"Direction: R_D*(LLaDA) / R_D*(ARM) = {_g(d['R_D_star_ratio'])} (published {_g(d['published_ratio'])}: "
            f"493.89 / 31.19, Prabhudesai et al. 2025 Table 1); intervals "
            f"{'separated' if d['intervals_separated'] else 'overlap'}; ARM ahead at one epoch: "
            f"{'yes' if d['arm_ahead_at_one_epoch'] else 'no'}: the CPU result {d['verdict']}"
        )
    elif d:
        lines.append(f"Direction: {d['verdict']}")
    return "\n".join(lines)


def report_data_constrained(
    design: DataConstrainedDesign,
    directory: Path,
    runs: list[Any],
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    stream: TextIO,
    start: float | None = None,
    workers: int = 1,
    starts: str = "coarse",
    **_: Any,
) -> tuple[dict, dict[str, Path]]:
    """Fit, plot and summarise a data-constrained study; returns (fit, files)."""
    from llada_lightning.scaling.cli import FIT, PLOTS, POINTS, write_fit
    from llada_lightning.scaling.collect import write_csv
    from llada_lightning.scaling.refits import jsonable
    from llada_lightning.scaling.repeated_data import critical_compute

    start = time.perf_counter() if start is None else start
    table = study_table(directory, runs, stream)
    points = write_csv(table, directory / POINTS)
    boots = n_bootstrap if design.n_bootstrap_cap is None else min(n_bootstrap, design.n_bootstrap_cap)
    # stage 1 always from the full 4500-start grid (Hoffmann et al. 2022): on this study's CPU points the 72-start
    # coarse grid found an equally good stage-1 fit (E and A/N^alpha trade off) with alpha = 0.04, whose N_opt(U)
    # is 1e-17 parameters, so stage 2 ran 56x worse (measured on the quick study's LLaDA points)
    stage1 = None
    fit: dict[str, Any] = {
        "design": "data-constrained",
        "n_runs": len(table),
        "unique_tokens": list(design.unique_tokens),
        "epochs": list(design.epochs),
        "objectives": {},
    }
    laws = {}
    for obj in design.objectives:
        fit["objectives"][obj], law = _fit_objective(
            _points(table, obj), n_bootstrap=boots, seed=seed, workers=workers, stage1=stage1
        )
        if law is not None:
            laws[obj] = law
    if {"llada", "arm"} <= set(laws):
        fit["critical_compute"] = {
            str(u): critical_compute(laws["arm"], laws["llada"], float(u)) for u in design.unique_tokens
        }
    keys = ("objective", "model", "status", "reason", "U", "epochs", "run_dir")
    fit["excluded"] = [{k: row.get(k) for k in keys} for row in table.rows if row["status"] != "done"]
    fit["one_epoch"] = _one_epoch_order(table, list(design.objectives))
    fit["direction"] = direction(fit)
    fit = jsonable(fit)
    fit_path = write_fit(fit, directory / FIT)
    plots = directory / PLOTS
    files = _plot_epochs(table, laws, list(design.objectives), plots / "epochs") + _plot_repetition(
        fit, plots / "repetition"
    )
    files_out = {"points": points, "fit": fit_path, "plots": plots}
    return fit, finish_report(directory, format_data_constrained_summary(fit), files_out, files, start, stream)
