"""A study's analysis and report: collect its runs, fit every law with bootstrap intervals, draw, summarise.

Writes `<study>/points.csv`, `fit.json`, `plots/` and `summary.txt`; every number of the summary is read from
fit.json (scaling/summary.py). Only the study's own runs (its placed windows) enter: run directories of an older
design under the same directory are ignored, and said so.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

from llada_lightning.config.errors import ConfigError
from llada_lightning.io import atomic_write_text

WHY_6N = (
    "C = 6 N D with N non-embedding, the budgets' convention and SMDM's for both objectives (Nie et al. 2024; "
    "Kaplan et al. 2020), so exponents and multipliers compare with the published ones; `full` (every matmul, the "
    "head and attention included, Chinchilla App. F) is what the CPU spends, but it is not iso-FLOP across the sizes "
    "of one budget at this scale (the head's share falls as N grows), so no IsoFLOP profile exists in it"
)


def flop_conventions(runs: list[Any]) -> dict[str, Any]:
    """C of every (objective, budget) in both conventions, from the runs' result.json: the budget (the runs'
    own convention) and the range over its sizes of the other one; what the fits use, and why."""
    from llada_lightning import rundir

    cells: dict[tuple[str, float], list[tuple[float, float, float]]] = {}
    used = set()
    for run in runs:
        res = rundir.read_result(run.run_dir)
        if res is None or res.get("status") != "done" or res.get("flops_budget") is None:
            continue
        used.add(str(res.get("flops_convention") or "6N"))
        key = (str(res["objective"]), float(res["flops_budget"]))
        cells.setdefault(key, []).append((float(res["N_nonemb"]), float(res["flops_6N"]), float(res["flops_full"])))
    rows = []
    for (objective, budget), sizes in sorted(cells.items()):
        sizes.sort()
        rows.append(
            {
                "objective": objective,
                "budget": budget,
                "N_min": sizes[0][0],
                "N_max": sizes[-1][0],
                "C_6N_min": min(s[1] for s in sizes),
                "C_6N_max": max(s[1] for s in sizes),
                "C_full_at_N_min": sizes[0][2],
                "C_full_at_N_max": sizes[-1][2],
            }
        )
    convention = used.pop() if len(used) == 1 else "mixed"
    return {"used": convention, "why": WHY_6N if convention == "6N" else "", "cells": rows}


def _range(low: float, high: float) -> str:
    return f"{f'{low:.3g}..{high:.3g}':<18}"


def format_conventions(section: dict[str, Any]) -> str:
    """The side-by-side table of fit.json's `flop_conventions`."""
    lines = [f"FLOP conventions side by side; the fits use {section['used']}: {section['why'] or 'the budgets own'}"]
    lines.append(f"  {'objective':<9} {'budget':>8}  {'N range':<18} {'C 6N':<18} {'C full':<18} full/6N")
    for r in section["cells"]:
        ratio = f"{r['C_full_at_N_max'] / r['C_6N_max']:.1f}-{r['C_full_at_N_min'] / r['C_6N_min']:.1f}"
        lines.append(
            f"  {r['objective']:<9} {r['budget']:>8.3g}  {_range(r['N_min'], r['N_max'])} "
            f"{_range(r['C_6N_min'], r['C_6N_max'])} {_range(r['C_full_at_N_max'], r['C_full_at_N_min'])} {ratio}"
        )
    return "\n".join(lines)


def study_table(directory: Path, runs: list[Any], stream: TextIO, label: Any = None):
    """The finished and unfinished runs of the study in `directory` as a Table: only the study's own runs (its
    placed windows; older run directories under it are ignored, and said so); `label(run)` renames the objective
    (a design's variant). Prints the table's report; raises a one-line error when no run has finished."""
    from llada_lightning.scaling.collect import collect

    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such study directory; launch the study first (llada study ...)")
    table = collect(directory, verbose=False)
    mine = {str(Path(r.run_dir).resolve()): r for r in runs}  # the study's runs: absolute; `directory`: maybe not
    rows = [row for row in table.rows if str(Path(row["run_dir"]).resolve()) in mine]
    stale = len(table.rows) - len(rows)
    if label is not None:
        for row in rows:
            row["objective"] = label(mine[str(Path(row["run_dir"]).resolve())])
    table.rows = rows
    print(table.report(), file=stream)
    if stale:
        print(f"study: ignored {stale} run directories under {directory} that the design no longer has", file=stream)
    if not len(table.usable()):
        raise ConfigError(f"study: no run of {directory} has finished yet; see `llada study ... --status`")
    return table


def finish_report(
    directory: Path, summary: str, files: dict[str, Path], plots: list[Path], start: float, stream: TextIO
) -> dict[str, Path]:
    """Write summary.txt (the summary, the files and the wall time) and print it; returns every file written."""
    files = {**files, **{f"plot {p.stem}": p for p in plots if p.suffix == ".png"}}
    summary += "\n\nfiles:\n" + "\n".join(f"  {k}: {v}" for k, v in files.items())
    summary += f"\nstudy: total wall time {_elapsed(start)}"
    atomic_write_text(directory / "summary.txt", summary + "\n")
    print(summary, file=stream)
    return {**files, "summary": directory / "summary.txt"}


def _elapsed(start: float) -> str:
    s = time.perf_counter() - start
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def report(
    directory: Path,
    runs: list[Any],
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    parametric: bool = True,
    starts: str = "coarse",
    stream: TextIO,
    start: float | None = None,
    workers: int = 1,
) -> tuple[dict, dict[str, Path]]:
    """Fit and report the finished `runs` of the study in `directory`; returns (fit, files)."""
    from llada_lightning.scaling.cli import FIT, PLOTS, POINTS, fit_table, is_degenerate, write_fit
    from llada_lightning.scaling.collect import write_csv
    from llada_lightning.scaling.plots import plot_study
    from llada_lightning.scaling.summary import format_summary

    start = time.perf_counter() if start is None else start
    table = study_table(directory, runs, stream)
    points = write_csv(table, directory / POINTS)
    fit = fit_table(table, n_bootstrap=n_bootstrap, seed=seed, parametric=parametric, starts=starts, workers=workers)
    fit["flop_conventions"] = flop_conventions(runs)
    fit_path = write_fit(fit, directory / FIT)
    plot_files = plot_study(table, fit, directory / PLOTS)
    files = {"points": points, "fit": fit_path, "plots": directory / PLOTS}
    files.update({f"plot {p.stem}": p for p in plot_files if p.suffix == ".png"})
    if is_degenerate(fit):
        print("study: WARNING: no scaling law could be fitted (see the warnings below)", file=stream)
    summary = format_summary(fit, {k: str(v) for k, v in files.items()})
    summary = format_conventions(fit["flop_conventions"]) + "\n" + summary
    summary += f"\nsummary: {directory / 'summary.txt'}\nstudy: total wall time {_elapsed(start)}"
    atomic_write_text(directory / "summary.txt", summary + "\n")
    files["summary"] = directory / "summary.txt"
    print(summary, file=stream)
    return fit, files
