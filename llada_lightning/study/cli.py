"""`llada study [DESIGN] [--dry-run | --status | --report] [--quick] [--out DIR] [--executor local|slurm]`

DESIGN is a registered design (default `isoflop`: IsoFLOP profiles of LLaDA and the ARM) or a YAML file naming one
(`design: isoflop`, then any of its parameters); `--set PARAM=VALUE` changes one parameter, `--quick` applies the
design's smoke-test preset (about a minute on 2 cores). The verbs:

  (none)     place what can be placed, launch what is neither done nor active, and with the local executor wait
             for each wave of budgets, place the next, and finish with the report; runs already done are skipped,
             so a second `llada study` only refits. On Slurm it submits the placed waves and returns: rerun it
             when they finish to place the next budgets, then `--report`.
  --dry-run  the table of runs: N, D, C in both conventions, tokens per parameter, steps, and the estimated wall
             time from a measured step time of each shape (cells still waiting for smaller budgets: provisional).
  --status   expected against finished runs per (objective, budget), and the placement notes.
  --report   collect the finished runs, fit everything with bootstrap intervals (fit.json), plot, summarise.

Exit status: 0; 1 when some runs did not finish (the report still covers the finished ones; rerun to retry).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from llada_lightning.config.errors import ConfigError

DEFAULT_OUT = "runs/study"


def _study(args: argparse.Namespace):
    from llada_lightning.study.design import load_design
    from llada_lightning.study.study import Study

    if args.parallel < 1 or args.threads < 1:
        raise ConfigError(f"--parallel {args.parallel} / --threads {args.threads}: both must be >= 1")
    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap {args.bootstrap}: must be >= 0")
    out = Path(args.out)
    blocker = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"--out {args.out}: {blocker} is a file, not a directory; choose another --out")
    design = load_design(args.design, quick=args.quick, sets=args.set or [])
    return Study(
        design, out, executor=args.executor, parallel=args.parallel, threads=args.threads, overrides=args.overrides
    )


def _fmt_time(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _fmt_est(seconds: float | None, gpu: bool) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:.3g}h" if gpu else _fmt_time(seconds)


def dry_run(study, *, measure: bool = True, out=None, gpu_flops: float | None = None, mfu: float = 0.4) -> list:
    """Print the study's runs with N, D, C (6N and full), D/N, steps and estimated wall time: measured on this
    machine, or with `gpu_flops` (peak FLOP/s of one accelerator) the GPU-hours at utilisation `mfu`."""
    from llada_lightning.flops import param_counts
    from llada_lightning.study.timing import accelerator_estimate, estimate

    out = out or sys.stdout
    planned = study.plan()
    runs = [p.run for p in planned]
    if gpu_flops is not None:
        est = accelerator_estimate(runs, peak_flops=gpu_flops, mfu=mfu)
    else:
        est = estimate(runs, threads=study.threads) if measure else {}
    print(
        f"{'name':<30} {'N':>9} {'D':>11} {'C(6N)':>9} {'C(full)':>9} {'D/N':>7} {'steps':>7} {'est':>7}  window",
        file=out,
    )
    for p in planned:
        n = param_counts(p.run.cfg.model)[0]
        d = p.run.tokens
        seconds = est.get(p.run.signature)
        print(
            f"{p.run.name:<30} {n:>9,} {d:>11,} {p.run.flops('6N'):>9.3g} {p.run.flops('full'):>9.3g} {d / n:>7.1f} "
            f"{p.run.steps:>7} {_fmt_est(seconds, gpu_flops is not None):>7}  "
            f"{'placed' if p.placed else 'provisional'}",
            file=out,
        )
    total6 = sum(p.run.flops("6N") for p in planned)
    totalf = sum(p.run.flops("full") for p in planned)
    line = f"{len(planned)} runs; compute {total6:.3g} FLOPs (6N), {totalf:.3g} (full)"
    if est:
        serial = sum(est.values())
        trunks = []
        if study.design.shares_trunks:
            from llada_lightning.study.timing import shared_estimate
            from llada_lightning.sweep.trunks import plan_trunks

            trunks = plan_trunks([p.run for p in planned], study.directory, singletons=True)
            serial = shared_estimate([p.run for p in planned], est, trunks)
        if gpu_flops is not None:
            line += (
                f"; estimated {serial / 3600:,.0f} GPU-hours at {100 * mfu:g}% MFU of {gpu_flops:.3g} FLOP/s per GPU "
                "(full-convention compute; an estimate)"
            )
        else:
            line += (
                f"; estimated {_fmt_time(serial)} of run time, ~{_fmt_time(serial / study.parallel)} wall with "
                f"{study.parallel} at once x {study.threads} thread(s) (measured step times; an estimate)"
            )
        if trunks:
            line += f"; {len(trunks)} shared WSD trunks counted once"
    print(line, file=out)
    waiting = sum(not p.placed for p in planned)
    if waiting:
        print(f"{waiting} runs are provisional: their windows are placed once the smaller budgets finish", file=out)
    return planned


def _cmd_study(args: argparse.Namespace) -> int:
    if args.design and "=" in args.design:  # `llada study train.lr=1e-3`: an override, not a design
        args.overrides, args.design = [args.design, *args.overrides], None
    verbs = [v for v in ("dry_run", "status", "report") if getattr(args, v)]
    if len(verbs) > 1:
        raise ConfigError(f"--{verbs[0].replace('_', '-')} and --{verbs[1].replace('_', '-')}: choose one")
    study = _study(args)
    if args.dry_run:
        if args.gpu_flops is not None and not (args.gpu_flops > 0 and 0 < args.mfu <= 1):
            raise ConfigError(f"--gpu-flops {args.gpu_flops} / --mfu {args.mfu}: need a peak > 0 and 0 < MFU <= 1")
        dry_run(study, measure=not args.no_measure, gpu_flops=args.gpu_flops, mfu=args.mfu)
        return 0
    if args.status:
        study.status()
        return 0
    fit_kwargs = {
        "n_bootstrap": args.bootstrap,
        "seed": args.seed,
        "parametric": not args.no_parametric,
        "starts": args.starts,
        "workers": study.parallel * study.threads,  # the cores the study was given: its fits use them too
    }
    report = study.design.analyze  # each design's own analysis (isoflop: study/report.py)
    if args.report:
        runs = study.expand(study.windows())
        report(study.directory, runs, stream=sys.stdout, **fit_kwargs)
        return 0
    start = time.perf_counter()
    print(
        f"study: {study.design.kind} -> {study.directory} ({study.executor} executor, {study.parallel} x "
        f"{study.threads} thread(s))"
    )
    try:
        runs, states = study.launch()
    except KeyboardInterrupt:
        print(
            "\nstudy: interrupted; the sweep's worker keeps running in the background. Rerun the same command to "
            f"wait for it and fit, or stop it with `llada sweep cancel {study.directory / 'spec.yaml'}`.",
            file=sys.stderr,
        )
        return 130
    not_done = [r.name for r in runs if states[r.signature].state != "done"]
    finished = not any(states[r.signature].state in ("queued", "running", "preempted") for r in runs)
    print(f"study: {len(runs) - len(not_done)} of {len(runs)} runs done after {_fmt_time(time.perf_counter() - start)}")
    if not finished:
        print("study: runs are still queued or running; when they finish: llada study ... --report (or rerun)")
        return 0
    if not_done:
        print(f"study: not done ({len(not_done)}): {', '.join(not_done)}")
    if any(states[r.signature].state == "done" for r in runs):
        report(study.directory, runs, stream=sys.stdout, start=start, **fit_kwargs)
    if not_done:
        print(f"study: {len(not_done)} runs did not finish; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


def register_study(sub: argparse._SubParsersAction) -> None:
    """Add `llada study` to the `llada` parser."""
    from llada_lightning.sweep.cluster import EXECUTORS

    p = sub.add_parser(
        "study",
        help="a scaling study from a design: --dry-run, launch, --status, --report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("design", nargs="?", default=None, help="a registered design (default isoflop) or a YAML file")
    verbs = p.add_argument_group("verbs (default: launch, wait, report)")
    verbs.add_argument("--dry-run", action="store_true", help="print the runs, their compute and estimated time")
    verbs.add_argument("--status", action="store_true", help="expected against finished runs per cell")
    verbs.add_argument("--report", action="store_true", help="fit, plot and summarise the finished runs")
    p.add_argument("--quick", action="store_true", help="the design's smoke-test preset (about a minute)")
    p.add_argument("--set", action="append", metavar="PARAM=VALUE", help="set one design parameter (repeatable)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"root of the study directories (default {DEFAULT_OUT})")
    p.add_argument("--executor", choices=EXECUTORS, default="local", help="where runs train (default local)")
    p.add_argument("--parallel", type=int, default=2, help="local executor: runs at once (default 2)")
    p.add_argument("--threads", type=int, default=1, help="local executor: torch threads per run (default 1)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--no-parametric", action="store_true", help="skip the Approach-3 law L(N, D)")
    p.add_argument("--no-measure", action="store_true", help="--dry-run without measuring step times")
    p.add_argument(
        "--gpu-flops",
        type=float,
        default=None,
        metavar="F",
        help="--dry-run: estimate GPU-hours for accelerators of peak F FLOP/s each (A100 bf16: 312e12)",
    )
    p.add_argument("--mfu", type=float, default=0.4, help="--dry-run --gpu-flops: model FLOPs utilisation (0.4)")
    p.add_argument(
        "--starts",
        choices=("full", "coarse"),
        default="coarse",
        help="parametric start grid: a 72-start sub-grid (coarse, default) or all 4500",
    )
    p.add_argument("overrides", nargs="*", help="extra overrides for every run (changes their signatures)")
    p.set_defaults(func=_cmd_study)
