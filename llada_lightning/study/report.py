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
) -> tuple[dict, dict[str, Path]]:
    """Fit and report the finished `runs` of the study in `directory`; returns (fit, files)."""
    from llada_lightning.scaling.cli import FIT, PLOTS, POINTS, fit_table, is_degenerate, write_fit
    from llada_lightning.scaling.collect import collect, write_csv
    from llada_lightning.scaling.plots import plot_study
    from llada_lightning.scaling.summary import format_summary

    start = time.perf_counter() if start is None else start
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such study directory; launch the study first (llada study ...)")
    table = collect(directory, verbose=False)
    run_dirs = {str(r.run_dir) for r in runs}
    stale = [row for row in table.rows if row["run_dir"] not in run_dirs]
    table.rows = [row for row in table.rows if row["run_dir"] in run_dirs]
    print(table.report(), file=stream)
    if stale:
        print(
            f"study: ignored {len(stale)} run directories under {directory} that the design no longer has", file=stream
        )
    if not len(table.usable()):
        raise ConfigError(f"study: no run of {directory} has finished yet; see `llada study --status`")
    points = write_csv(table, directory / POINTS)
    fit = fit_table(table, n_bootstrap=n_bootstrap, seed=seed, parametric=parametric, starts=starts)
    fit_path = write_fit(fit, directory / FIT)
    plot_files = plot_study(table, fit, directory / PLOTS)
    files = {"points": points, "fit": fit_path, "plots": directory / PLOTS}
    files.update({f"plot {p.stem}": p for p in plot_files if p.suffix == ".png"})
    if is_degenerate(fit):
        print("study: WARNING: no scaling law could be fitted (see the warnings below)", file=stream)
    summary = format_summary(fit, {k: str(v) for k, v in files.items()})
    summary += f"\nsummary: {directory / 'summary.txt'}\nstudy: total wall time {_elapsed(start)}"
    atomic_write_text(directory / "summary.txt", summary + "\n")
    files["summary"] = directory / "summary.txt"
    print(summary, file=stream)
    return fit, files
