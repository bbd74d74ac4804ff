"""Figures of a scaling study, drawn from `fit_study`'s result and the points table (no refitting here).

Each figure is written as PNG and PDF with the CSV of exactly what it plots beside it (same stem), all atomically
(temporary file + rename), so a reader can redraw or check any figure from its data file:

- `isoflop`: loss against N per budget, one panel per objective, with each budget's parabola and its vertex;
- `frontier`: L*(C) with the fitted law, extrapolated past the largest budget, and its bootstrap band;
- `optimal_size`: N*(C) and D*(C) with their power-law fits (N* ~ C^a, D* ~ C^b) and bands;
- `multiplier`: k(C) with L_MDM(k C) = L_ARM(C), its interval at the budgets and the band between and beyond.

matplotlib (Agg) is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llada_lightning.io import atomic_write
from llada_lightning.scaling.collect import Table
from llada_lightning.scaling.summary import fmt_interval

FORMATS = ("png", "pdf")
FIGURES = ("isoflop", "frontier", "optimal_size", "multiplier")
COLORS = {"llada": "tab:blue", "arm": "tab:red"}  # other objectives take the next colours of the cycle
LABELS = {"llada": "LLaDA (masked diffusion)", "arm": "ARM (autoregressive)"}


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _color(objective: str, order: Sequence[str]) -> str:
    if objective in COLORS:
        return COLORS[objective]
    cycle = ["tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:gray"]
    return cycle[list(order).index(objective) % len(cycle)]


def _label(objective: str) -> str:
    return LABELS.get(objective, objective)


def _arr(values) -> np.ndarray:
    """A JSON list (None for NaN) as a float array."""
    return np.array([np.nan if v is None else v for v in (values or [])], dtype=np.float64)


def _convention(fit: dict) -> str:
    conv = fit.get("conventions") or ["6N"]
    if conv == ["6N"]:
        return "6N convention: C = 6 N D, N non-embedding"
    if conv == ["full"]:
        return "full convention: all matmuls, head and attention"
    return f"mixed conventions {conv}"


def _compute_label(fit: dict) -> str:
    return f"training compute C [FLOPs; {_convention(fit)}]"


def _level(fit: dict) -> str:
    return f"{100 * fit.get('bootstrap', {}).get('level', 0.95):g}%"


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float | np.floating):
        return "" if not math.isfinite(v) else repr(float(v))
    return str(v)


def write_plot_csv(path: Path, columns: Sequence[str], rows: list[dict]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def save_figure(fig, stem: Path, formats: Sequence[str]) -> list[Path]:
    return [
        atomic_write(
            stem.with_suffix(f".{fmt}"), lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
        )
        for fmt in formats
    ]


def _band_status(curve: dict) -> tuple[np.ndarray, str]:
    """Where a curve's band can be drawn (reliable, finite pointwise intervals) and a note for its legend."""
    low, high = _arr(curve.get("low")), _arr(curve.get("high"))
    n = len(_arr(curve.get("C")))
    if len(low) != n or "reliable" not in curve:
        return np.zeros(n, dtype=bool), ""
    ok = np.array(curve["reliable"], dtype=bool) & np.isfinite(low) & np.isfinite(high)
    level = f"{100 * curve.get('level', 0.95):g}%"
    worst = max(curve.get("n_failed") or [0])
    total = curve.get("n_resamples", 0)
    if not ok.any():
        why = f"{worst}/{total} refits failed" if worst else (curve.get("problem") or "unreliable").split(":")[0]
        return ok, f"no {level} band: unreliable ({why})"
    note = f"band: {level} bootstrap"
    if worst:
        note += f", {total - worst}/{total} refits ok"
    if not ok.all():
        note += f"; omitted at {int((~ok).sum())} of {n} C where unreliable"
    return ok, note


def _band(ax, curve: dict, key: str, color: str, label: str | None, x_max: float | None = None) -> None:
    """A fitted curve, solid up to `x_max` (the largest budget) and dashed beyond, with its band where reliable.

    The legend names the band only when one is drawn, and says when (and why) it is not."""
    c, y = _arr(curve.get("C")), _arr(curve.get(key))
    if not len(c):
        return
    ok, note = _band_status(curve)
    if note and label:
        label = f"{label}\n({note})"
    inside = c <= x_max * (1 + 1e-9) if x_max else np.ones(len(c), dtype=bool)
    ax.plot(c[inside], y[inside], "-", color=color, lw=1.6, label=label)
    if (~inside).any():
        j = max(int(inside.sum()) - 1, 0)  # join the dashed part to the solid one
        ax.plot(c[j:], y[j:], "--", color=color, lw=1.3)
    if ok.any():
        low, high = _arr(curve.get("low")), _arr(curve.get("high"))
        ax.fill_between(c, low, high, where=ok, color=color, alpha=0.15, lw=0)


def _log_axes(ax, *, x: bool = True, y: bool = True) -> bool:
    """Log scales where the plotted data allow them; an empty panel says why instead of failing."""
    box = ax.dataLim
    lims = (box.x0, box.x1, box.y0, box.y1)
    ok = all(np.isfinite(lims)) and box.x0 <= box.x1 and box.y0 <= box.y1
    if not ok or (x and box.x0 <= 0) or (y and box.y0 <= 0):
        ax.text(0.5, 0.5, "nothing to plot: see the warnings in fit.json", ha="center", va="center",
                transform=ax.transAxes, fontsize=8, color="gray")  # fmt: skip
        return False
    if x:
        ax.set_xscale("log")
    if y:
        ax.set_yscale("log")
    _plain_ticks(ax, y=y)
    return True


def _plain_ticks(ax, *, y: bool) -> None:
    """Loss-like log axes read better as 3.5 than as 3.5 x 10^0."""
    if not y:
        return
    lo, hi = ax.dataLim.y0, ax.dataLim.y1
    if lo > 0 and hi / lo < 20:
        from matplotlib.ticker import FormatStrFormatter

        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))


def _objectives(fit: dict) -> list[str]:
    return list(fit.get("objectives", {}))


def _c_max(fit: dict) -> float | None:
    """The largest compute the fits saw (budgets, frontier points): where extrapolation starts."""
    values: list[float] = []
    for sec in fit.get("objectives", {}).values():
        values += [b["budget"] for b in sec.get("isoflop", {}).get("budgets", [])]
        values += [c for c in sec.get("frontier", {}).get("points", {}).get("C", []) if c is not None]
    return max(values) if values else None


def _mark_extrapolation(ax, c_max: float | None) -> None:
    if c_max:
        ax.axvline(c_max, color="gray", ls=":", lw=1)
        ax.annotate(
            " extrapolation →", (c_max, 0.01), xycoords=("data", "axes fraction"), va="bottom", fontsize=7, color="gray"
        )


def _budget_colors(budgets: Sequence[float]):
    plt = pyplot()
    cmap = plt.get_cmap("viridis")
    n = max(len(budgets), 1)
    return {b: cmap(0.1 + 0.8 * i / max(n - 1, 1)) for i, b in enumerate(sorted(budgets))}


def plot_isoflop(table: Table, fit: dict, stem: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Loss vs N (log axis) per budget, one panel per objective: runs, fitted parabolas, vertices."""
    from llada_lightning.scaling.isoflop import group_budgets

    plt = pyplot()
    objectives = _objectives(fit)
    n_panels = max(len(objectives), 1)
    fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 4.2), squeeze=False)
    rows: list[dict] = []
    usable = table.usable()
    for ax, objective in zip(axes[0], objectives, strict=False):
        sec = fit["objectives"][objective].get("isoflop", {})
        sub = usable.select(objective=objective)
        n, loss, budget = sub.column("N"), sub.column("loss"), sub.column("budget")
        ok = np.isfinite(budget) & (budget > 0) & np.isfinite(n) & (n > 0)
        labels = np.full(len(budget), np.nan)
        if ok.any():
            labels[ok] = group_budgets(budget[ok])
        groups = np.unique(labels[ok])
        colors = _budget_colors(list(groups))
        fits = {b["budget"]: b for b in sec.get("budgets", [])}
        used = sec.get("budgets_used", [])
        for label in groups:
            color = colors[label]
            sel = labels == label
            order = np.argsort(n[sel])
            x_runs, y_runs = n[sel][order], loss[sel][order]
            ax.plot(x_runs, y_runs, "o", color=color, ms=5, label=f"C = {label:.2g}")
            rows += [
                {"objective": objective, "kind": "run", "budget": label, "N": x, "loss": y}
                for x, y in zip(x_runs, y_runs, strict=True)
            ]
            b = next((f for c, f in fits.items() if np.isclose(c, label, rtol=1e-6)), None)
            if b is None:
                continue  # fewer than 3 sizes: no parabola
            grid = np.linspace(np.log10(x_runs).min() - 0.15, np.log10(x_runs).max() + 0.15, 60)
            curve = np.polyval(b["coef_log10N"], grid)
            ax.plot(10**grid, curve, "-" if b.get("convex") else ":", color=color, lw=1.0, alpha=0.8)
            rows += [
                {"objective": objective, "kind": "parabola", "budget": label, "N": 10**g, "loss": c}
                for g, c in zip(grid, curve, strict=True)
            ]
            n_star = b.get("N_star")
            if not b.get("convex") or n_star is None or abs(np.log10(n_star) - grid.mean()) > 2:
                continue  # no minimum, or one so far off the grid that it would only squash the axis
            is_used = any(np.isclose(label, u, rtol=1e-6) for u in used)
            ax.plot(n_star, b["L_star"], "*" if is_used else "X", color=color, ms=13 if is_used else 9, mec="black",
                    mew=0.6)  # fmt: skip
            rows.append(
                {"objective": objective, "kind": "vertex" if is_used else "vertex_unused", "budget": label,
                 "N": n_star, "loss": b["L_star"]}
            )  # fmt: skip
        _log_axes(ax, y=False)
        ax.set_xlabel("non-embedding parameters N")
        ax.set_ylabel("validation loss [nats/token]")
        title = f"{_label(objective)}: IsoFLOP profiles"
        if "error" in sec:
            title += "\n(no exponent fit: too few budgets with an interior minimum)"
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, title="budget (FLOPs)", title_fontsize=7)
    fig.suptitle(
        f"IsoFLOP curves: parabolas in log N (dotted: concave); * vertex used in the fits, X vertex not used; "
        f"{_convention(fit)}",
        fontsize=8,
    )
    fig.tight_layout()
    written = save_figure(fig, stem, formats)
    plt.close(fig)
    write_plot_csv(stem.with_suffix(".csv"), ("objective", "kind", "budget", "N", "loss"), rows)
    return [*written, stem.with_suffix(".csv")]


def plot_frontier(fit: dict, stem: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """L*(C) per objective: frontier points, fitted law (dashed past the largest budget) and bootstrap band."""
    plt = pyplot()
    objectives = _objectives(fit)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    rows: list[dict] = []
    c_max = _c_max(fit)
    for objective in objectives:
        fr = fit["objectives"][objective].get("frontier", {})
        color = _color(objective, objectives)
        pts = fr.get("points", {})
        c, y = _arr(pts.get("C")), _arr(pts.get("L"))
        source = (fr.get("source") or "").replace("_", " ")
        ax.plot(
            c,
            y,
            "o",
            color=color,
            mec="black",
            mew=0.5,
            label=f"{_label(objective)}: {source.replace('isoflop', 'IsoFLOP')} points",
        )
        rows += [{"objective": objective, "kind": "point", "C": ci, "L": yi} for ci, yi in zip(c, y, strict=True)]
        curve = fr.get("curves", {}).get("L_star")
        if curve and fr.get("alpha") is not None:
            if fr.get("irreducible"):
                law = f"L = {fr['E']:.3g} + {fr['A']:.3g} C^-{fr['alpha']:.3g}"
            else:
                law = f"L = {fr['A']:.3g} C^-{fr['alpha']:.3g}"
            _band(ax, curve, "L_star", color, f"fit {law}", c_max)
            rows += _curve_rows(objective, curve, "L_star", ("C", "L", "L_low", "L_high"))
    if _log_axes(ax):
        _mark_extrapolation(ax, c_max)
    ax.set_xlabel(_compute_label(fit), fontsize=8)
    ax.set_ylabel("compute-optimal validation loss L*(C) [nats/token]")
    ax.set_title(f"Compute frontier (bands: {_level(fit)} bootstrap)", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7)
    fig.tight_layout()
    written = save_figure(fig, stem, formats)
    plt.close(fig)
    write_plot_csv(stem.with_suffix(".csv"), ("objective", "kind", "C", "L", "L_low", "L_high"), rows)
    return [*written, stem.with_suffix(".csv")]


def _curve_rows(objective: str, curve: dict, key: str, names: tuple[str, str, str, str]) -> list[dict]:
    """The CSV rows of a curve: its bounds only where the pointwise interval is reliable (as drawn)."""
    c, y = _arr(curve.get("C")), _arr(curve.get(key))
    low, high = _arr(curve.get("low")), _arr(curve.get("high"))
    ok, _ = _band_status(curve)
    out = []
    for i in range(len(c)):
        row = {"objective": objective, "kind": "fit", names[0]: c[i], names[1]: y[i]}
        if ok[i]:
            row[names[2]], row[names[3]] = low[i], high[i]
        out.append(row)
    return out


def plot_optimal_size(fit: dict, stem: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """N*(C) and D*(C): IsoFLOP vertices and the power laws N* ~ C^a, D* ~ C^b per objective, with bands."""
    plt = pyplot()
    objectives = _objectives(fit)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    rows: list[dict] = []
    for objective in objectives:
        iso = fit["objectives"][objective].get("isoflop", {})
        color = _color(objective, objectives)
        used = set(iso.get("budgets_used", []))
        vertices = [b for b in iso.get("budgets", []) if b["budget"] in used]
        curves = iso.get("curves", {})
        interval = iso.get("interval", {})
        for ax, key, exponent in ((axes[0], "N_star", "a"), (axes[1], "D_star", "b")):
            c = np.array([b["budget"] for b in vertices], dtype=np.float64)
            v = _arr([b[key] for b in vertices])
            ax.plot(c, v, "o", color=color, mec="black", mew=0.5)
            rows += [
                {"objective": objective, "quantity": key, "kind": "vertex", "C": ci, "value": vi}
                for ci, vi in zip(c, v, strict=True)
            ]
            if key in curves and iso.get(exponent) is not None:
                label = f"{_label(objective)}: {exponent} = {iso[exponent]:.3f}{fmt_interval(interval.get(exponent))}"
                _band(ax, curves[key], key, color, label, _c_max(fit))
                for r in _curve_rows(objective, curves[key], key, ("C", "value", "low", "high")):
                    rows.append({**r, "quantity": key})
    for ax, name in ((axes[0], "compute-optimal size N*(C) [non-embedding parameters]"), (axes[1], "D*(C) [tokens]")):
        if _log_axes(ax):
            _mark_extrapolation(ax, _c_max(fit))
        ax.set_xlabel(_compute_label(fit), fontsize=8)
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0].set_title(f"N* ~ C^a (IsoFLOP vertices; bands {_level(fit)} bootstrap)", fontsize=10)
    axes[1].set_title("D* ~ C^b", fontsize=10)
    fig.tight_layout()
    written = save_figure(fig, stem, formats)
    plt.close(fig)
    write_plot_csv(stem.with_suffix(".csv"), ("objective", "quantity", "kind", "C", "value", "low", "high"), rows)
    return [*written, stem.with_suffix(".csv")]


def plot_multiplier(fit: dict, stem: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """k(C) with L_MDM(k C) = L_ARM(C): the estimate and interval at each budget, and the curve with its band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    rows: list[dict] = []
    cmp = fit.get("comparison")
    if cmp is None:
        ax.text(0.5, 0.5, "no comparison: needs frontier fits of both objectives", ha="center", transform=ax.transAxes)
    else:
        c, k = _arr(cmp.get("compute")), _arr(cmp.get("k"))
        k = np.where(np.isnan(k), np.inf, k)  # JSON null: k = inf, the MDM never reaches the ARM's loss
        records = cmp.get("interval", {}).get("k") or []
        curve = cmp.get("curves", {}).get("k")
        if curve:
            assumes = f", assuming {cmp['assumes']}" if cmp.get("assumes") else ""
            _band(ax, curve, "k", "tab:purple", f"k(C) from the two fitted frontiers{assumes}", _c_max(fit))
            rows += _curve_rows("", curve, "k", ("C", "k", "k_low", "k_high"))
        reliable = np.array([bool(r.get("reliable")) for r in records], dtype=bool) if records else None
        if reliable is not None and len(reliable) == len(c):
            low = np.array([np.nan if r["low"] is None else r["low"] for r in records], dtype=np.float64)
            high = np.array([np.inf if r["high"] is None else r["high"] for r in records], dtype=np.float64)
            shown = reliable & np.isfinite(k) & np.isfinite(low) & np.isfinite(high)
            failed = max((r.get("n_failed") or 0) for r in records)
            ok_text = f", {records[0]['n_resamples'] - failed}/{records[0]['n_resamples']} refits ok" if failed else ""
            if shown.any():
                err = np.vstack([np.clip(k - low, 0, None), np.clip(high - k, 0, None)])[:, shown]
                ax.errorbar(c[shown], k[shown], yerr=err, fmt="o", color="black", capsize=3,
                            label=f"budgets ({_level(fit)} interval{ok_text})")  # fmt: skip
            rest = ~shown & np.isfinite(k)
            if rest.any():
                ax.plot(c[rest], k[rest], "o", mfc="white", color="black",
                        label="budgets (interval unreliable: see fit.json)")  # fmt: skip
        else:
            low = high = np.full(len(c), np.nan)
            shown = np.zeros(len(c), dtype=bool)
            ax.plot(c, k, "o", color="black", label="budgets (no interval)")
        for i in range(len(c)):
            row = {"kind": "budget", "C": c[i], "k": k[i]}
            if shown[i]:
                row["k_low"], row["k_high"] = low[i], high[i]
            rows.append(row)
        if _log_axes(ax):
            _mark_extrapolation(ax, _c_max(fit))
            ax.axhline(1.0, color="gray", ls="--", lw=1)
        ax.set_ylabel(f"compute multiplier k: L_{cmp['mdm']}(k C) = L_{cmp['arm']}(C)")
        ax.legend(fontsize=7)
    ax.set_xlabel(_compute_label(fit), fontsize=8)
    ax.set_title("Compute multiplier of masked diffusion over autoregression", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    written = save_figure(fig, stem, formats)
    plt.close(fig)
    write_plot_csv(stem.with_suffix(".csv"), ("kind", "C", "k", "k_low", "k_high"), [{**r} for r in rows])
    return [*written, stem.with_suffix(".csv")]


def plot_study(table: Table, fit: dict, out_dir: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Every figure of the study into `out_dir` (PNG + PDF + CSV each); returns the files written."""
    out = Path(out_dir)
    files = plot_isoflop(table, fit, out / "isoflop", formats)
    files += plot_frontier(fit, out / "frontier", formats)
    files += plot_optimal_size(fit, out / "optimal_size", formats)
    files += plot_multiplier(fit, out / "multiplier", formats)
    return files
