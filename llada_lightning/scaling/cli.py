"""`llada scaling collect|fit|plot` (registered into the main parser by `register`).

    llada scaling collect SWEEP_DIR_OR_CSV [--out DIR] [--json]   -> DIR/points.csv (+ the report of excluded runs)
    llada scaling fit     SWEEP_DIR_OR_CSV [--out DIR] [--json]   -> DIR/points.csv, DIR/fit.json (+ a summary)
    llada scaling plot    SWEEP_DIR_OR_CSV [--out DIR] [--fit FIT.json]  -> DIR/plots/*.{png,pdf,csv}

DIR defaults to the sweep directory (or the CSV's directory). Bad input (no runs, a CSV without the needed
columns, a sweep no law can be fitted to) is a ConfigError: one line, exit 2. Module-level imports stay light
(no numpy/scipy/matplotlib/torch) so that `llada --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from llada_lightning.config.errors import ConfigError
from llada_lightning.flops import CONVENTIONS

POINTS = "points.csv"
FIT = "fit.json"
PLOTS = "plots"


class FitProgress:
    """Progress of long fits, one line on `stream` (stderr) at most every `every` seconds once a fit has run for
    `after` seconds: short fits print nothing, so a quick error stays the only line."""

    def __init__(self, stream: TextIO | None = None, *, every: float = 10.0, after: float = 5.0, clock=None) -> None:
        self.stream = stream
        self.every, self.after = every, after
        self.clock = clock or time.monotonic
        self.start = self.clock()
        self.last = -float("inf")
        self.stage, self.stage_start = "", self.start

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self.clock()
        if stage != self.stage:
            self.stage, self.stage_start = stage, now
        if now - self.start < self.after or (now - self.last < self.every and done < total) or total <= 0:
            return
        elapsed = now - self.stage_start
        left = elapsed / done * (total - done) if done else float("nan")
        eta = "" if done >= total or left != left else f", ~{_duration(left)} left"
        print(f"fit: {stage}: {done}/{total} ({_duration(elapsed)}{eta})", file=self.stream or sys.stderr, flush=True)
        self.last = now


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def load_source(source: str, convention: str | None = None):
    """A Table from a sweep directory (its **/result.json) or a CSV of points, and the default output directory."""
    from llada_lightning.scaling.collect import collect
    from llada_lightning.scaling.points_csv import read_points

    src = Path(source)
    if src.is_dir():
        try:
            table = collect(src, convention=convention, verbose=False)
        except ValueError as err:
            raise ConfigError(f"{src}: {err}") from err
        if not len(table):
            raise ConfigError(f"{src}: no runs found (no **/result.json nor run config.yaml under it)")
        return table, src
    if src.is_file():
        try:
            table = read_points(src, convention=convention)
        except (ValueError, KeyError, UnicodeDecodeError, csv_error()) as err:
            raise ConfigError(f"{src}: not a usable CSV of points: {str(err).splitlines()[0]}") from err
        if not len(table):
            raise ConfigError(f"{src}: the CSV has a header but no rows")
        return table, src.parent
    raise ConfigError(f"{source}: no such sweep directory or CSV file")


def csv_error() -> type[Exception]:
    import csv

    return csv.Error


def require_usable(table, source: str) -> None:
    if not len(table.usable()):
        counts = ", ".join(f"{v} {k}" for k, v in sorted(table.status_counts().items()))
        first = next((r["reason"] for r in table.rows if r["reason"]), "")
        raise ConfigError(
            f"{source}: no usable runs to fit ({counts}{'; first: ' + first if first else ''}); "
            f"see `llada scaling collect {source}`"
        )


def fit_table(
    table,
    *,
    n_bootstrap: int,
    seed: int,
    parametric: bool,
    workers: int = 1,
    starts: str = "full",
    resample: str = "residual",
    progress=None,
    **kwargs,
) -> dict:
    """`fit_study` with the command line's choices; `starts="coarse"` runs the parametric fit from the 72-start
    sub-grid of study.COARSE_STARTS instead of the specified 4500 starts (~20x faster, for small sweeps)."""
    from llada_lightning.scaling.study import COARSE_STARTS, fit_study

    if starts not in ("full", "coarse"):
        raise ConfigError(f"--starts {starts!r}: choose full or coarse")
    try:
        return fit_study(
            table,
            n_bootstrap=n_bootstrap,
            seed=seed,
            parametric=parametric,
            parametric_workers=workers,
            parametric_starts=COARSE_STARTS if starts == "coarse" else None,
            bootstrap_scheme=resample,
            progress=progress,
            **kwargs,
        )
    except ConfigError:
        raise
    except ValueError as err:  # data the fits cannot take (fits of single laws report their failures as warnings)
        raise ConfigError(f"the fit failed: {str(err).splitlines()[0]}") from err


def is_degenerate(fit: dict) -> bool:
    """True when no objective got any law (no IsoFLOP, frontier or parametric fit)."""
    return not any(
        "error" not in sec.get(law, {"error": ""})
        for sec in fit.get("objectives", {}).values()
        for law in ("isoflop", "frontier", "parametric")
    )


def degenerate_error(fit: dict, source: str) -> ConfigError:
    reasons = [
        f"{name}: {law} {sec[law]['error']}"
        for name, sec in fit.get("objectives", {}).items()
        for law in ("isoflop", "frontier", "parametric")
        if "error" in sec.get(law, {})
    ]
    first = "; ".join(dict.fromkeys(r.split(": ", 1)[1] for r in reasons[:3])) or "no objective in the data"
    return ConfigError(f"{source}: degenerate sweep, no scaling law can be fitted: {first}")


def write_fit(fit: dict, path: Path) -> Path:
    from llada_lightning.io import atomic_write_text

    atomic_write_text(path, json.dumps(fit, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def read_fit(path: str | Path) -> dict:
    p = Path(path)
    try:
        fit = json.loads(p.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{p}: not a readable fit.json ({str(err).splitlines()[0]})") from err
    if not isinstance(fit, dict) or "objectives" not in fit:
        raise ConfigError(f"{p}: not a fit.json written by `llada scaling fit` (no 'objectives')")
    return fit


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for intervals (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--no-parametric", action="store_true", help="skip the Approach-3 law L(N, D) (the slowest fit)")
    p.add_argument("--workers", type=int, default=1, help="processes for the parametric start grid")
    p.add_argument(
        "--starts",
        choices=("full", "coarse"),
        default="full",
        help="parametric start grid: the specified 4500 starts (full) or a 72-start sub-grid (coarse, ~20x faster)",
    )
    add_resample_option(p)


def add_resample_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resample",
        choices=("residual", "pairs"),
        default="residual",
        help="bootstrap of the IsoFLOP fits: residuals over the fixed design (default) or pairs of runs",
    )


def _fit_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap {args.bootstrap}: must be >= 0")
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be >= 1")
    return {
        "n_bootstrap": args.bootstrap,
        "seed": args.seed,
        "parametric": not args.no_parametric,
        "workers": args.workers,
        "starts": args.starts,
        "resample": args.resample,
        "progress": FitProgress(),
    }


def _out_dir(args: argparse.Namespace, default: Path) -> Path:
    return Path(args.out) if args.out else default


def _cmd_collect(args: argparse.Namespace) -> int:
    from llada_lightning.scaling.collect import write_csv

    table, default = load_source(args.source, args.convention)
    path = write_csv(table, _out_dir(args, default) / POINTS)
    if args.json:
        print(
            json.dumps(
                {
                    "points": str(path),
                    "n_runs": len(table),
                    "status_counts": table.status_counts(),
                    "reason_counts": table.reason_counts(),
                    "notes": table.notes,
                    "excluded": table.excluded(),
                },
                default=str,
            )
        )
    else:
        print(table.report())
        print(f"wrote {path}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from llada_lightning.scaling.collect import write_csv
    from llada_lightning.scaling.summary import format_summary

    table, default = load_source(args.source, args.convention)
    require_usable(table, args.source)
    kwargs = _fit_kwargs(args)
    out = _out_dir(args, default)
    fit = fit_table(table, **kwargs)
    if is_degenerate(fit):
        raise degenerate_error(fit, args.source)
    points = write_csv(table, out / POINTS)
    path = write_fit(fit, out / FIT)
    if args.json:
        print(json.dumps(fit, sort_keys=True))
    else:
        print(table.report())
        print(format_summary(fit, {"points": str(points), "fit": str(path)}))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from llada_lightning.scaling.collect import write_csv
    from llada_lightning.scaling.plots import plot_study

    table, default = load_source(args.source, args.convention)
    require_usable(table, args.source)
    out = _out_dir(args, default)
    if args.fit:
        fit = read_fit(args.fit)
    else:
        fit = fit_table(table, **_fit_kwargs(args))
        if is_degenerate(fit):
            raise degenerate_error(fit, args.source)
        write_csv(table, out / POINTS)
        write_fit(fit, out / FIT)  # the figures and the fit.json beside them always agree
    files = plot_study(table, fit, out / PLOTS)
    if args.json:
        print(json.dumps({"files": [str(f) for f in files]}))
    else:
        for w in fit.get("warnings", []):
            print(f"warning: {w}")
        print(f"wrote {len(files)} files to {out / PLOTS}: " + ", ".join(sorted({f.stem for f in files})))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the scaling subcommands to the `llada` parser."""
    p = sub.add_parser("scaling", help="scaling-law analysis of a sweep or a CSV: collect, fit, plot")
    scaling_sub = p.add_subparsers(dest="scaling_command", required=True)
    for name, func, text in (
        ("collect", _cmd_collect, "write points.csv (every run, with status and reason) and report excluded runs"),
        ("fit", _cmd_fit, "fit IsoFLOP, frontier, parametric laws and k(C) with bootstrap intervals -> fit.json"),
        ("plot", _cmd_plot, "IsoFLOP curves, L*(C), N*(C), k(C) as PNG + PDF, each with its CSV -> plots/"),
    ):
        q = scaling_sub.add_parser(name, help=text, description=text)
        q.add_argument("source", help="a sweep directory (its **/result.json) or a CSV of points")
        q.add_argument("--out", help="output directory (default: the sweep directory, or the CSV's directory)")
        q.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
        q.add_argument("--convention", choices=CONVENTIONS, default=None, help="FLOP convention of C")
        if name != "collect":
            _add_fit_options(q)
        if name == "plot":
            q.add_argument("--fit", help="draw this fit.json instead of fitting again")
        q.set_defaults(func=func)
