"""`llada study [--out DIR] [--quick]`: a complete CPU scaling study of LLaDA against the ARM, end to end.

1. launch the IsoFLOP sweep `configs/sweep/cpu-isoflop.yaml` (`--quick`: `cpu-isoflop-quick.yaml`) through the
   local executor (`--parallel` runs at once, `--threads` torch threads each) and wait for it; runs already
   done are skipped, so a second `llada study` only refits (minutes), and a failed or interrupted run is
   retried;
2. collect `<out>/<sweep>/points.csv`, fit everything with bootstrap intervals -> `fit.json`, draw the figures
   -> `plots/`, and print the summary (also written to `summary.txt`), every number read from fit.json.

Fits that the data cannot support (a concave parabola, a vertex outside the sizes, too few budgets) are reported
as warnings in the summary and in fit.json; the study still finishes. Exit status: 0, or 1 when some runs did not
finish (the analysis still covers the finished ones; rerun the same command to retry the rest).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from llada_lightning.config.errors import ConfigError

SPEC = "cpu-isoflop"
QUICK_SPEC = "cpu-isoflop-quick"
DEFAULT_OUT = "runs/study"


def _elapsed(start: float) -> str:
    s = time.perf_counter() - start
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def run_study(
    out: str | Path = DEFAULT_OUT,
    *,
    quick: bool = False,
    spec: str | None = None,
    parallel: int = 2,
    threads: int = 1,
    n_bootstrap: int = 200,
    seed: int = 0,
    parametric: bool = True,
    starts: str = "coarse",
    overrides: list[str] | None = None,
    stream=None,
) -> tuple[dict, dict[str, Path], int]:
    """Run (or resume) the sweep, then collect, fit, plot and summarise. Returns (fit, files, n_not_done)."""
    from llada_lightning.scaling.cli import FIT, PLOTS, POINTS, fit_table, is_degenerate, write_fit
    from llada_lightning.scaling.collect import collect, write_csv
    from llada_lightning.scaling.plots import plot_study
    from llada_lightning.scaling.summary import format_summary
    from llada_lightning.sweep import launch, load_spec, wait_for

    stream = stream or sys.stdout
    start = time.perf_counter()
    spec_name = spec or (QUICK_SPEC if quick else SPEC)
    if parallel < 1 or threads < 1:
        raise ConfigError(f"--parallel {parallel} / --threads {threads}: both must be >= 1")
    sweep_overrides = [f"root={out}", f"cluster.parallel={parallel}", f"cluster.torch_threads={threads}"]
    sweep_overrides += list(overrides or [])
    directory = load_spec(spec_name, sweep_overrides).directory
    print(f"study: sweep {spec_name} -> {directory} (local executor, {parallel} x {threads} thread(s))", file=stream)
    report = launch(spec_name, executor="local", overrides=sweep_overrides, wait=True, out=stream)
    states = wait_for(report.runs, poll_s=1.0)  # also waits for runs an earlier, interrupted study left running
    not_done = [r.name for r in report.runs if states[r.signature].state != "done"]
    print(f"study: sweep finished after {_elapsed(start)}; {len(report.runs) - len(not_done)} runs done", file=stream)
    if not_done:
        print(f"study: not done ({len(not_done)}): {', '.join(not_done)}", file=stream)

    table = collect(directory, verbose=False)
    run_dirs = {str(r.run_dir) for r in report.runs}
    stale = [row for row in table.rows if row["run_dir"] not in run_dirs]
    table.rows = [row for row in table.rows if row["run_dir"] in run_dirs]  # only the spec's current runs
    print(table.report(), file=stream)
    if stale:
        print(f"study: ignored {len(stale)} run directories under {directory} that the spec no longer has", file=stream)
    if not len(table.usable()):
        raise ConfigError(f"study: no run of {spec_name} finished; see `llada sweep status {spec_name} root={out}`")
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
    from llada_lightning.io import atomic_write_text

    atomic_write_text(directory / "summary.txt", summary + "\n")
    files["summary"] = directory / "summary.txt"
    print(summary, file=stream)
    return fit, files, len(not_done)


def _cmd_study(args: argparse.Namespace) -> int:
    out = Path(args.out)
    blocker = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"--out {args.out}: {blocker} is a file, not a directory; choose another --out")
    try:
        _, _, n_not_done = run_study(
            args.out,
            quick=args.quick,
            spec=args.spec,
            parallel=args.parallel,
            threads=args.threads,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
            parametric=not args.no_parametric,
            starts=args.starts,
            overrides=args.overrides,
        )
    except KeyboardInterrupt:
        print(
            "\nstudy: interrupted; the sweep's worker keeps running in the background. Rerun the same command to "
            "wait for it and fit, or stop it with `llada sweep cancel SPEC root=OUT`.",
            file=sys.stderr,
        )
        return 130
    if n_not_done:
        print(f"study: {n_not_done} runs did not finish; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


def register_study(sub: argparse._SubParsersAction) -> None:
    """Add `llada study` to the `llada` parser."""
    p = sub.add_parser(
        "study",
        help="a complete CPU scaling study: IsoFLOP sweep of LLaDA and ARM, fits, plots, summary",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"root of the runs and results (default {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help=f"the small variant ({QUICK_SPEC}: ~1-2 min)")
    p.add_argument("--spec", default=None, help=f"another sweep spec (default {SPEC}, or {QUICK_SPEC} with --quick)")
    p.add_argument("--parallel", type=int, default=2, help="runs at once (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--no-parametric", action="store_true", help="skip the Approach-3 law L(N, D)")
    p.add_argument(
        "--starts",
        choices=("full", "coarse"),
        default="coarse",
        help="parametric start grid: a 72-start sub-grid (coarse, default: 12 points per objective) or all 4500",
    )
    p.add_argument("overrides", nargs="*", help="extra overrides for every run (changes their signatures)")
    p.set_defaults(func=_cmd_study)
