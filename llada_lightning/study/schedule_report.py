"""The analysis of the `schedules` design: each variant's ELBO against compute, its frontier, its compute multiplier
relative to LLaDA's linear schedule and to the ARM (bootstrap intervals), and the variance of each variant's
training-loss estimator and of its gradient at fixed weights.

Writes `<study>/points.csv` (objective = the variant), `fit.json`, `plots/` (isoflop, frontier, multipliers,
variance: PNG, PDF and the CSV of each) and `summary.txt`, whose numbers are all read from fit.json.

- Multipliers: k with L_v(k C) = L_ref(C) (Nie et al. 2024, SMDM sec. 3; scaling/multiplier.py), from the frontiers
  of v and the reference refitted together on each bootstrap resample (scaling/comparison.py). A difference is
  "resolved" when the interval of k excludes 1 at a budget, and "not resolved" otherwise.
- Variance (objectives/variance.py): on the final checkpoint of each variant's run at the reference cell (its
  largest budget, the middle of the window, the first seed), `variance_draws` draws of the times and masks on
  `variance_batches` training batches: the loss's variance and the trace of its gradient's covariance. The same
  draws are also taken with every LLaDA estimator at one common checkpoint (the linear variant's), which isolates
  the estimator from the weights it is evaluated at. The unweighted loss is not on the ELBO's scale, so estimators
  are compared by the relative noise of their gradient, tr Cov(g) / ||E g||^2, which no rescaling changes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from llada_lightning.study.report import finish_report, study_table
from llada_lightning.study.schedules import ARM, OBJECTIVE_KEYS, REFERENCE, VARIANTS, SchedulesDesign, variant_of


def _comparisons(table, variants: list[str], ref: str, fit_kwargs: dict) -> dict[str, dict]:
    """k of every variant against `ref` (each pair refitted together), keyed by variant."""
    from llada_lightning.scaling.cli import fit_table

    out = {}
    for v in variants:
        if v == ref:
            continue
        pair = table.select(objective=v)
        pair.rows = pair.rows + table.select(objective=ref).rows
        fit = fit_table(pair, parametric=False, mdm=v, arm=ref, curve_points=0, **fit_kwargs)
        out[v] = fit.get("comparison") or {"error": "; ".join(fit.get("warnings", [])) or "no comparison"}
    return out


def resolved(comparison: dict) -> list[dict]:
    """Per budget of a comparison: k, its interval, and whether the interval excludes 1 (the difference is resolved)."""
    rows = []
    intervals = (comparison.get("interval") or {}).get("k") or []
    for i, (c, k) in enumerate(zip(comparison.get("compute") or [], comparison.get("k") or [], strict=False)):
        rec = intervals[i] if i < len(intervals) else {}
        low, high, ok = rec.get("low"), rec.get("high"), bool(rec.get("reliable"))
        verdict = "no interval"
        if ok and low is not None and high is not None:
            verdict = "resolved: more compute" if low > 1 else "resolved: less compute" if high < 1 else "not resolved"
        elif rec:
            verdict = "interval unreliable"
        rows.append({"C": c, "k": k, "low": low, "high": high, "verdict": verdict})
    return rows


# -- paired differences at equal (N, D, seed) -------------------------------------------------------------------
def paired_differences(table, variants: list[str], ref: str, *, n_bootstrap: int, seed: int) -> dict[str, list[dict]]:
    """Per variant and budget: the mean of L_v - L_ref over the (size, seed) runs both trained (the same data, model
    and compute, only the objective differs), with a percentile bootstrap interval over those pairs; resolved when
    it excludes 0. No frontier or vertex is fitted, so this holds even where the IsoFLOP parabolas are flat."""
    from llada_lightning.scaling.bootstrap import bootstrap

    usable = table.usable()

    def losses(name: str) -> dict[tuple[float, float, float], float]:
        sub = usable.select(objective=name)
        keys = zip(sub.column("budget"), sub.column("N"), sub.column("seed"), strict=True)
        return {
            (float(b), float(n), float(sd)): float(v) for (b, n, sd), v in zip(keys, sub.column("loss"), strict=True)
        }

    base = losses(ref)
    out: dict[str, list[dict]] = {}
    for v in variants:
        if v == ref:
            continue
        mine = losses(v)
        rows = []
        for budget in sorted({k[0] for k in base}):
            common = sorted(k for k in mine if k in base and k[0] == budget)
            diff = np.array([mine[k] - base[k] for k in common])
            row: dict[str, Any] = {"C": budget, "pairs": len(common), "mean": float(diff.mean()) if len(diff) else None}
            if len(diff) >= 2 and n_bootstrap > 0:
                rec = bootstrap(lambda d: {"mean": float(np.mean(d))}, [diff], n_resamples=n_bootstrap, seed=seed)
                row.update({k: rec.record("mean")[k] for k in ("low", "high", "reliable", "problem")})
                if row["reliable"]:
                    lo, hi = row["low"], row["high"]
                    row["verdict"] = (
                        "resolved: higher loss" if lo > 0 else "resolved: lower loss" if hi < 0 else "not resolved"
                    )
                else:
                    row["verdict"] = "interval unreliable"
            else:
                row["verdict"] = "fewer than 2 pairs"
            rows.append(row)
        out[v] = rows
    return out


# -- the estimator variance -----------------------------------------------------------------------------------------
def _reference_runs(design: SchedulesDesign, runs: list[Any]) -> dict[str, Any]:
    """Per LLaDA variant, its finished run at the largest budget, middle size of its window, first seed."""
    from llada_lightning import rundir

    budget = max(float(b) for b in design.budgets)
    out: dict[str, Any] = {}
    for v in design.objectives:
        if v == ARM:
            continue
        mine = [
            r
            for r in runs
            if variant_of(r.cfg) == v
            and float(r.cfg.train.flops_budget) == budget
            and int(r.cfg.train.seed) == design.seeds[0]
            and (res := rundir.read_result(r.run_dir)) is not None
            and res.get("status") == "done"
        ]
        if mine:
            mine.sort(key=lambda r: int(r.cfg.model.d_model))
            out[v] = mine[len(mine) // 2]
    return out


def _training_batches(run: Any, n: int) -> list[Any]:
    """The first `n` training batches of the run's own data stream (the same for every variant at one seed)."""
    from itertools import islice

    from llada_lightning.data.datamodule import LMDataModule

    cfg = run.cfg
    dm = LMDataModule(cfg.data, batch_size=cfg.train.batch_size, seed=cfg.train.seed, val_batches=1)
    dm.prepare_data()
    dm.setup("fit")
    return list(islice(iter(dm.train_dataloader()), n))


def _variance_record(est: Any) -> dict[str, Any]:
    grad_var, norm = est.grad_var, est.grad_norm_sq_mean
    return {
        "loss_mean": est.loss_mean,
        "loss_var": est.loss_var,
        "loss_var_se": est.loss_var_se,
        "loss_cv": math.sqrt(max(est.loss_var, 0.0)) / abs(est.loss_mean) if est.loss_mean else None,
        "grad_var": grad_var,
        "grad_norm_sq_mean": norm,
        "grad_relative_noise": grad_var / norm if grad_var is not None and norm else None,
        "draws": est.draws,
        "n_batches": est.n_batches,
    }


def estimator_variances(design: SchedulesDesign, runs: list[Any], *, seed: int, stream: TextIO) -> dict[str, Any]:
    """The variance section of fit.json: each variant at its own checkpoint, and every estimator at the linear
    variant's checkpoint."""
    from llada_lightning.objectives.variance import estimator_variance_of_run

    refs = _reference_runs(design, runs)
    if not refs:
        return {"error": "no LLaDA variant has a finished run at the largest budget"}
    anchor = refs.get(REFERENCE) or next(iter(refs.values()))
    batches = _training_batches(anchor, design.variance_batches)
    kwargs = {"draws": design.variance_draws, "seed": seed, "gradient": True}

    def overrides(v: str) -> dict[str, str]:
        keys = dict(zip(OBJECTIVE_KEYS, VARIANTS[v], strict=True))
        return {k.split(".", 1)[1]: val for k, val in keys.items() if k != "objective"}

    own, common = {}, {}
    t0 = time.perf_counter()
    for v, run in refs.items():
        own[v] = {"run": run.name, **_variance_record(estimator_variance_of_run(run.run_dir, batches, **kwargs))}
        common[v] = _variance_record(
            estimator_variance_of_run(anchor.run_dir, batches, objective_overrides=overrides(v), **kwargs)
        )
    print(
        f"study: estimator variances of {len(refs)} variants ({design.variance_draws} draws x "
        f"{design.variance_batches} batches, twice) in {time.perf_counter() - t0:.0f} s",
        file=stream,
    )
    return {
        "draws": design.variance_draws,
        "batches": design.variance_batches,
        "seed": seed,
        "common_checkpoint": anchor.name,
        "own_checkpoint": own,
        "at_common_checkpoint": common,
    }


def variance_verdicts(section: dict[str, Any]) -> dict[str, str]:
    """At the common checkpoint: is each variant's loss variance resolved from the linear schedule's (2 standard
    errors of the difference)? Only for estimators on the ELBO's scale (not `unweighted`)."""
    common = section.get("at_common_checkpoint") or {}
    ref = common.get(REFERENCE)
    out = {}
    for v, rec in common.items():
        if v == REFERENCE or ref is None:
            continue
        if VARIANTS[v][2] != "elbo":
            out[v] = "another scale (not an ELBO): compare the relative gradient noise"
            continue
        diff = rec["loss_var"] - ref["loss_var"]
        se = math.hypot(rec["loss_var_se"], ref["loss_var_se"])
        if se > 0 and abs(diff) > 2 * se:
            out[v] = f"resolved: {'higher' if diff > 0 else 'lower'} loss variance ({diff / se:+.1f} se)"
        else:
            out[v] = f"not resolved ({diff / se:+.1f} se)" if se > 0 else "not resolved"
    return out


# -- plots and summary ----------------------------------------------------------------------------------------------
def _plot_multipliers(fit: dict, stem: Path) -> list[Path]:
    from llada_lightning.scaling.plots import FORMATS, pyplot, save_figure, write_plot_csv

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    rows = []
    for ax, (key, ref) in zip(axes, (("vs_linear", REFERENCE), ("vs_arm", ARM)), strict=True):
        for j, (v, comp) in enumerate(sorted(fit.get(key, {}).items())):
            for r in resolved(comp):
                rows.append({"reference": ref, "variant": v, **r})
            pts = resolved(comp)
            if not pts:
                continue
            c = np.array([p["C"] for p in pts], dtype=float) * (1 + 0.04 * (j - 2))  # side by side
            k = np.array([np.nan if p["k"] is None else p["k"] for p in pts], dtype=float)
            lo = np.array([np.nan if p["low"] is None else p["low"] for p in pts], dtype=float)
            hi = np.array([np.nan if p["high"] is None else p["high"] for p in pts], dtype=float)
            err = np.vstack([np.where(np.isfinite(lo), k - lo, 0), np.where(np.isfinite(hi), hi - k, 0)])
            ax.errorbar(c, k, yerr=np.clip(err, 0, None), fmt="o-", capsize=3, label=v)
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C [FLOPs, 6N]")
        ax.set_ylabel(f"k: L_variant(k C) = L_{ref}(C)")
        ax.set_title(f"compute multiplier against {ref} (95% bootstrap)")
        ax.legend(fontsize=8)
    files = save_figure(fig, stem, FORMATS)
    plt.close(fig)
    files.append(
        write_plot_csv(stem.with_suffix(".csv"), ["reference", "variant", "C", "k", "low", "high", "verdict"], rows)
    )
    return files


def _plot_variance(section: dict, stem: Path) -> list[Path]:
    from llada_lightning.scaling.plots import FORMATS, pyplot, save_figure, write_plot_csv

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = []
    for where in ("own_checkpoint", "at_common_checkpoint"):
        for v, rec in (section.get(where) or {}).items():
            rows.append(
                {
                    "checkpoint": where,
                    "variant": v,
                    **{k: rec.get(k) for k in ("loss_var", "loss_var_se", "grad_relative_noise", "loss_mean")},
                }
            )
    common = [r for r in rows if r["checkpoint"] == "at_common_checkpoint"]
    own = {r["variant"]: r for r in rows if r["checkpoint"] == "own_checkpoint"}
    names = [r["variant"] for r in common]
    x = np.arange(len(names))
    axes[0].bar(
        x - 0.2,
        [r["loss_var"] for r in common],
        0.4,
        yerr=[2 * r["loss_var_se"] for r in common],
        label="common checkpoint",
        capsize=3,
    )
    axes[0].bar(
        x + 0.2,
        [own[n]["loss_var"] if n in own else np.nan for n in names],
        0.4,
        yerr=[2 * own[n]["loss_var_se"] if n in own else 0 for n in names],
        label="own checkpoint",
        capsize=3,
    )
    axes[0].set_ylabel("Var of the training loss over mask draws (±2 se)")
    axes[1].bar(x - 0.2, [r["grad_relative_noise"] or np.nan for r in common], 0.4, label="common checkpoint")
    axes[1].bar(
        x + 0.2,
        [(own[n]["grad_relative_noise"] or np.nan) if n in own else np.nan for n in names],
        0.4,
        label="own checkpoint",
    )
    axes[1].set_ylabel("tr Cov(g) / ||E g||^2")
    for ax in axes:
        ax.set_xticks(x, names)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.suptitle(
        f"estimator variance at fixed weights ({section.get('draws')} draws x {section.get('batches')} batches)"
    )
    files = save_figure(fig, stem, FORMATS)
    plt.close(fig)
    files.append(
        write_plot_csv(
            stem.with_suffix(".csv"),
            ["checkpoint", "variant", "loss_mean", "loss_var", "loss_var_se", "grad_relative_noise"],
            rows,
        )
    )
    return files


def _g(v: Any, fmt: str = ".3g") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def format_schedules_summary(fit: dict) -> str:
    """The summary of a schedules study: every number read from `fit` (fit.json)."""
    lines = [f"Masking-schedule ablation: {fit['n_runs']} runs, variants {', '.join(fit['variants'])}"]
    lines.append("Validation loss: the ELBO-weighted bound of each variant's schedule (the ARM: exact NLL), nats/token")
    lines.append(f"\n{'variant':<11} {'frontier L* at each budget':<40} alpha (E=0 unless said)")
    for v in fit["variants"]:
        sec = (fit["fit"]["objectives"].get(v) or {}).get("frontier") or {}
        pts = sec.get("points") or {}
        cells = ", ".join(
            f"{_g(c, '.2g')}: {_g(loss, '.4f')}" for c, loss in zip(pts.get("C", []), pts.get("L", []), strict=False)
        )
        alpha = _g(sec.get("alpha"), ".3g") + ("" if not sec.get("irreducible") else f", E = {_g(sec.get('E'))}")
        lines.append(f"{v:<11} {cells or sec.get('error', '-'):<40} {alpha}")
    for key, ref in (("vs_linear", REFERENCE), ("vs_arm", ARM)):
        lines.append(f"\nCompute multiplier against {ref}: k with L_variant(k C) = L_{ref}(C), 95% bootstrap interval")
        for v, comp in fit.get(key, {}).items():
            if "error" in comp:
                lines.append(f"  {v:<11} {comp['error']}")
                continue
            cells = [
                f"{_g(r['C'], '.2g')}: {_g(r['k'])} [{_g(r['low'])}, {_g(r['high'])}] {r['verdict']}"
                for r in resolved(comp)
            ]
            lines.append(f"  {v:<11} " + "; ".join(cells))
    paired = fit.get("paired_vs_linear") or {}
    if paired:
        lines.append(
            "\nLoss difference from linear at equal (N, D, seed): mean of L_variant - L_linear over the runs of a "
            "budget [95% bootstrap over them]"
        )
        for v, rows in paired.items():
            cells = [
                f"{_g(r['C'], '.2g')}: {_g(r['mean'], '+.4f')} "
                f"[{_g(r.get('low'), '+.4f')}, {_g(r.get('high'), '+.4f')}] {r['verdict']}"
                for r in rows
            ]
            lines.append(f"  {v:<11} " + "; ".join(cells))
    var = fit.get("variance") or {}
    if "error" in var:
        lines.append(f"\nEstimator variance: {var['error']}")
    elif var:
        lines.append(
            f"\nEstimator variance at fixed weights ({var['draws']} mask draws x {var['batches']} training batches; "
            f"common checkpoint: {var['common_checkpoint']})"
        )
        lines.append(
            f"  {'variant':<11} {'Var loss (common)':<22} {'grad noise (common)':<20} {'Var loss (own)':<22} "
            "grad noise (own)   verdict vs linear"
        )
        verdicts = fit.get("variance_verdicts", {})
        for v, rec in var["at_common_checkpoint"].items():
            own = var["own_checkpoint"].get(v, {})
            lines.append(
                f"  {v:<11} {_g(rec['loss_var']) + ' ± ' + _g(rec['loss_var_se'], '.2g'):<22} "
                f"{_g(rec['grad_relative_noise']):<20} "
                f"{_g(own.get('loss_var')) + ' ± ' + _g(own.get('loss_var_se'), '.2g'):<22} "
                f"{_g(own.get('grad_relative_noise')):<18} {verdicts.get(v, '(reference)')}"
            )
    if fit.get("warnings"):
        lines.append("\nwarnings:")
        lines.extend(f"  - {w}" for w in fit["warnings"])
    return "\n".join(lines)


def report_schedules(
    design: SchedulesDesign,
    directory: Path,
    runs: list[Any],
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    stream: TextIO,
    start: float | None = None,
    workers: int = 1,
    **_: Any,
) -> tuple[dict, dict[str, Path]]:
    """Fit, plot and summarise a schedules study; returns (fit, files)."""
    from llada_lightning.scaling.cli import FIT, PLOTS, POINTS, fit_table, write_fit
    from llada_lightning.scaling.collect import write_csv
    from llada_lightning.scaling.plots import plot_frontier, plot_isoflop
    from llada_lightning.scaling.refits import jsonable

    start = time.perf_counter() if start is None else start
    table = study_table(directory, runs, stream, label=lambda run: variant_of(run.cfg))
    points = write_csv(table, directory / POINTS)
    present = [v for v in design.objectives if len(table.usable().select(objective=v))]
    kw = {"n_bootstrap": n_bootstrap, "seed": seed}
    fit_all = fit_table(table, parametric=False, mdm=REFERENCE, arm=ARM, **kw)
    fit: dict[str, Any] = {
        "design": "schedules",
        "n_runs": len(table),
        "variants": present,
        "fit": fit_all,
        # the ARM against linear is linear against the ARM (vs_arm), inverted: not repeated
        "vs_linear": _comparisons(table, [v for v in present if v != ARM], REFERENCE, kw)
        if REFERENCE in present
        else {},
        "vs_arm": _comparisons(table, present, ARM, kw) if ARM in present else {},
    }
    fit["paired_vs_linear"] = paired_differences(table, [v for v in present if v != ARM], REFERENCE, **kw)
    if REFERENCE in fit["vs_arm"]:
        fit["vs_arm"] = {REFERENCE: fit["vs_arm"].pop(REFERENCE), **fit["vs_arm"]}
    fit["variance"] = estimator_variances(design, runs, seed=seed, stream=stream)
    fit["variance_verdicts"] = variance_verdicts(fit["variance"])
    fit["warnings"] = list(fit_all.get("warnings", []))
    fit = jsonable(fit)
    fit_path = write_fit(fit, directory / FIT)
    plots = directory / PLOTS
    files: list[Path] = []
    files += plot_isoflop(table, fit_all, plots / "isoflop")
    files += plot_frontier(fit_all, plots / "frontier")
    files += _plot_multipliers(fit, plots / "multipliers")
    if "at_common_checkpoint" in fit["variance"]:
        files += _plot_variance(fit["variance"], plots / "variance")
    files_out = {"points": points, "fit": fit_path, "plots": plots}
    return fit, finish_report(directory, format_schedules_summary(fit), files_out, files, start, stream)
