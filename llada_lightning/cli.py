"""The `llada` command line: train, sft, demo, config, ladder, runs, sweep, scaling, study, experiment, sample, eval,
export, data, plan, bench."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from llada_lightning import __version__, rundir
from llada_lightning.config.errors import ConfigError
from llada_lightning.rundir import RunDirBusy, RunResult


def _cmd_train(args: argparse.Namespace) -> int:
    from llada_lightning.config.compose import compose

    cfg = compose(args.overrides)
    from llada_lightning.training.run import train

    return _report(train(cfg))


def _report(result: RunResult) -> int:
    """Print a finished run's line (exit 0), or how to resume an unfinished one (exit 75)."""
    if result.get("status") != "done":
        print(
            f"{result['status']} at step {result.get('steps')}: {result.get('message', '')}; "
            f"rerun the same command to resume from {rundir.last_checkpoint(result['run_dir'])}"
        )
        return 75  # EX_TEMPFAIL: not finished, resumable
    print(
        f"{result['objective']} {result['model']}: val_loss {result['val_loss']:.4f} "
        f"val_bpb {result['val_bpb']:.4f} after {result['steps']} steps -> {result['run_dir']}"
    )
    return 0


def _cmd_sft(args: argparse.Namespace) -> int:
    from llada_lightning.config.compose import compose
    from llada_lightning.sft.parent import sft_overrides
    from llada_lightning.training.run import train

    return _report(train(compose(sft_overrides(args.parent, args.overrides))))


def _cmd_config(args: argparse.Namespace) -> int:
    from llada_lightning.config.compose import compose, to_yaml

    print(to_yaml(compose(args.overrides)), end="")
    return 0


def _cmd_ladder(args: argparse.Namespace) -> int:
    from llada_lightning.config import ladder
    from llada_lightning.flops import flops_per_token, param_counts

    if args.seq_len is not None and args.seq_len < 1:
        raise ConfigError(f"--seq-len {args.seq_len} must be >= 1 (the context for the FLOP columns)")
    sizes = ladder(args.prefix)
    if not sizes:
        prefixes = sorted({name.split("-")[0] + "-" for name in ladder()})
        raise ConfigError(f"--prefix {args.prefix!r} matches no ladder size; use one of: {', '.join(prefixes)}")
    print(
        f"{'name':<12} {'layers':>6} {'heads':>5} {'d':>5} {'N_nonemb':>15} {'N_total':>15} "
        f"{'6N/token':>10} {'full/token':>11}"
    )
    for name, m in sizes.items():
        nonemb, total = param_counts(m)
        seq = min(args.seq_len or m.max_seq_len, m.max_seq_len)
        print(
            f"{name:<12} {m.n_layers:>6} {m.n_heads:>5} {m.d_model:>5} {nonemb:>15,} {total:>15,} "
            f"{flops_per_token(m, seq, '6N'):>10.3g} {flops_per_token(m, seq, 'full'):>11.3g}"
        )
    return 0


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cmd_runs(args: argparse.Namespace) -> int:
    from llada_lightning.rundir import find_run_dirs, summarize

    root = Path(args.root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such directory; give the root of your runs (default: runs)")
    rows = [summarize(d) for d in find_run_dirs(root)]
    if not rows:
        print(f"no runs under {root} (a run directory holds config.yaml or result.json)")
        return 0
    width = max(len("run"), *(len(str(r.run_dir.relative_to(root)) or ".") for r in rows))
    print(
        f"{'run':<{width}}  {'status':<11} {'objective':<9} {'model':<12} {'steps':>11} {'N':>10} "
        f"{'tokens':>10} {'FLOPs':>9} {'conv':<4} {'val_loss':>8}"
    )
    for r in rows:
        name = str(r.run_dir.relative_to(root)) or "."
        print(
            f"{name:<{width}}  {r.status:<11} {r.objective:<9} {r.model:<12} {r.steps:>11} {_fmt(r.N, ',d'):>10} "
            f"{_fmt(r.tokens, '.3g'):>10} {_fmt(r.flops, '.3g'):>9} {r.convention:<4} {_fmt(r.loss, '.4f'):>8}"
        )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from llada_lightning.demo import run_demo

    run_demo(args.runs_root, args.overrides)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from llada_lightning import sweep

    if args.sweep_command == "launch":
        report = sweep.launch(
            args.spec,
            executor=args.executor,
            dry_run=args.dry_run,
            overrides=args.overrides,
            wait=args.wait,
            share_trunks=args.share_trunks,
        )
        if args.wait and not args.dry_run:
            states = sweep.statuses(report.runs)
            failed = [r.name for r in report.runs if states[r.signature].state != "done"]
            if failed:
                print(f"not done: {', '.join(failed)}", file=sys.stderr)
                return 1
    elif args.sweep_command == "status":
        sweep.status_table(args.spec, args.overrides)
    elif args.sweep_command == "cancel":
        from llada_lightning.sweep.manage import split_cancel_args

        pattern, overrides = split_cancel_args(args.filter, args.overrides)
        sweep.cancel(args.spec, pattern, overrides)
    elif args.sweep_command == "logs":
        sweep.logs(args.run, root=args.root, lines=args.lines)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `llada: error: <what> (see `<prog> --help`)`, exit 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"llada: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="llada", description=__doc__)
    parser.add_argument("--version", action="version", version=f"llada-lightning {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one run (resumes if its run directory has a checkpoint)")
    p.add_argument("overrides", nargs="*", help="group choices (model=cpu-1m) and key=value overrides")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser(
        "sft",
        help="fine-tune a pre-trained run on instructions (LLaDA SFT / answer-only ARM loss) into a new run",
        description="Starts from PARENT's weights and tokenizer, trains on conversations with LLaDA's SFT schedule "
        "(configs/train/sft.yaml) and writes a new run directory (sft-<objective>-<model>-<signature>) that records "
        "its parent; rerun to resume. data=instructions (built-in set, the default), data=FILE.jsonl, or data=NAME "
        "(a datasets source); sft.* and every other override as for `llada train`.",
    )
    p.add_argument("parent", help="the pre-trained run directory (or a checkpoint file inside one)")
    p.add_argument("overrides", nargs="*", help="data=..., sft.*, objective.sft_normalization=..., train.*, ...")
    p.set_defaults(func=_cmd_sft)
    p = sub.add_parser("config", help="print the resolved, validated config")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=_cmd_config)
    p = sub.add_parser("ladder", help="the model-size ladder with exact parameter counts and FLOPs per token")
    p.add_argument("--prefix", default="", help="only sizes whose name starts with this (cpu-, smdm-)")
    p.add_argument("--seq-len", type=int, default=None, help="context for the FLOP columns (default: max)")
    p.set_defaults(func=_cmd_ladder)
    p = sub.add_parser("sweep", help="grids of runs on Slurm or this machine: launch, status, cancel, logs")
    sweep_sub = p.add_subparsers(dest="sweep_command", required=True)
    q = sweep_sub.add_parser("launch", help="submit the runs that are neither done nor queued/running")
    q.add_argument("spec", help="a sweep spec: path, or name in configs/sweep/")
    q.add_argument("--executor", default=None, help="slurm, local or debug (default: the cluster config's)")
    q.add_argument("--dry-run", action="store_true", help="print each run, its action and the total compute")
    q.add_argument("--wait", action="store_true", help="block until every submitted run has finished")
    q.add_argument(
        "--share-trunks",
        action="store_true",
        help="WSD runs differing only in budget branch off one shared trunk (as the spec's share_trunks: true)",
    )
    q.add_argument("overrides", nargs="*", help="overrides for every run; name=/root=/cluster= for the sweep")
    q = sweep_sub.add_parser("status", help="a table of every run: state, step, latest val loss, job, log")
    q.add_argument("spec")
    q.add_argument("overrides", nargs="*")
    q = sweep_sub.add_parser("cancel", help="cancel the queued and running runs (those matching --filter)")
    q.add_argument("spec")
    q.add_argument("--filter", default=None, metavar="PATTERN", help="only runs whose name or signature has it")
    q.add_argument("overrides", nargs="*", help="name=/root= of the sweep, launch overrides; a bare word: --filter")
    q = sweep_sub.add_parser("logs", help="the log of one run (directory, signature or name)")
    q.add_argument("run")
    q.add_argument("--root", default="runs/sweeps")
    q.add_argument("--lines", type=int, default=40)
    p.set_defaults(func=_cmd_sweep)
    from llada_lightning.bench.cli import register as register_bench
    from llada_lightning.data.cli import register as register_data
    from llada_lightning.experiments.cli import register as register_experiment
    from llada_lightning.inference.cli import register as register_inference
    from llada_lightning.interop.cli import register as register_export
    from llada_lightning.planning.cli import register as register_plan
    from llada_lightning.scaling.cli import register as register_scaling
    from llada_lightning.study.cli import register_study

    register_inference(sub)
    register_export(sub)
    register_plan(sub)
    register_bench(sub)
    register_scaling(sub)
    register_study(sub)
    register_experiment(sub)
    register_data(sub)
    p = sub.add_parser(
        "runs", help="a table of the run directories under ROOT: status, objective, N, tokens, FLOPs, loss"
    )
    p.add_argument("root", nargs="?", default="runs", help="where to look (default: runs)")
    p.set_defaults(func=_cmd_runs)
    p = sub.add_parser("demo", help="train a tiny LLaDA and a tiny ARM on the embedded corpus, print both losses")
    p.add_argument("overrides", nargs="*", help="extra overrides applied to both runs")
    p.add_argument("--runs-root", default="runs/demo")
    p.set_defaults(func=_cmd_demo)
    return parser


def _dispatch(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """Parse `argv` and run its command; returns the command's exit code."""
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may follow options (`sweep launch SPEC --executor slurm key=value`)
        flags = [e for e in extra if e.startswith("-")]
        if flags or not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(flags or extra)}")
        args.overrides = [*args.overrides, *extra]
    code = int(args.func(args))
    sys.stdout.flush()  # a reader that went away (`llada ladder | head -1`) shows here, not at interpreter exit
    return code


def _debug_requested(argv: list[str]) -> bool:
    """Whether `--debug` is among the options before the command (`llada --debug train ...`)."""
    for arg in argv:
        if not arg.startswith("-"):
            return False
        if arg == "--debug":
            return True
    return False


def _first_line(exc: BaseException) -> str:
    """The first non-blank line of `exc`'s message (at most 300 characters), or its type when it has none."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__


def _describe_os_error(exc: OSError) -> str:
    """`<file>: <strerror>` (both files of a rename), else the error's first line."""
    if exc.filename is None or not exc.strerror:
        return _first_line(exc)
    what = str(exc.filename) if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    return f"{what}: {exc.strerror}"


def _stdout_gone() -> int:
    """Point stdout at /dev/null (so the exit flush cannot fail again) and return 141, as for SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a file descriptor (captured in tests)
        pass
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `llada` command; any failure is one line on stderr and an exit code, never a traceback.

    2 config error, 3 non-finite loss, 73 run directory busy, 1 OS or internal error, 130 interrupted,
    141 stdout closed early. `llada --debug ...` re-raises OS and internal errors with their traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    try:
        return _dispatch(build_parser(), argv)
    except ConfigError as exc:
        print(f"llada: config error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"llada: {exc}", file=sys.stderr)
        return 3
    except RunDirBusy as exc:
        print(f"llada: {exc}", file=sys.stderr)
        return 73  # EX_CANTCREAT: the run directory belongs to another live process
    except BrokenPipeError:
        return _stdout_gone()
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if debug:
            raise
        print(f"llada: {_describe_os_error(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if debug:
            raise
        print(
            f"llada: internal error: {type(exc).__name__}: {_first_line(exc)} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
