"""The `llada` command line: train, demo, config, ladder, sweep, scaling, study, sample, eval."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from llada_lightning.config.errors import ConfigError


def _cmd_train(args: argparse.Namespace) -> int:
    from llada_lightning.config.compose import compose

    cfg = compose(args.overrides)
    from llada_lightning.training.run import train

    result = train(cfg)
    if result.get("status") != "done":
        print(
            f"{result['status']} at step {result.get('steps')}: {result.get('message', '')}; "
            f"rerun the same command to resume from {result['run_dir']}/checkpoints/last.ckpt"
        )
        return 75  # EX_TEMPFAIL: not finished, resumable
    print(
        f"{result['objective']} {result['model']}: val_loss {result['val_loss']:.4f} "
        f"val_bpb {result['val_bpb']:.4f} after {result['steps']} steps -> {result['run_dir']}"
    )
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from llada_lightning.config.compose import compose, to_yaml

    print(to_yaml(compose(args.overrides)), end="")
    return 0


def _cmd_ladder(args: argparse.Namespace) -> int:
    from llada_lightning.config import ladder
    from llada_lightning.flops import flops_per_token, param_counts

    print(
        f"{'name':<12} {'layers':>6} {'heads':>5} {'d':>5} {'N_nonemb':>15} {'N_total':>15} "
        f"{'6N/token':>10} {'full/token':>11}"
    )
    for name, m in ladder(args.prefix).items():
        nonemb, total = param_counts(m)
        seq = min(args.seq_len or m.max_seq_len, m.max_seq_len)
        print(
            f"{name:<12} {m.n_layers:>6} {m.n_heads:>5} {m.d_model:>5} {nonemb:>15,} {total:>15,} "
            f"{flops_per_token(m, seq, '6N'):>10.3g} {flops_per_token(m, seq, 'full'):>11.3g}"
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
            args.spec, executor=args.executor, dry_run=args.dry_run, overrides=args.overrides, wait=args.wait
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
        sweep.cancel(args.spec, args.filter or "", args.overrides)
    elif args.sweep_command == "logs":
        sweep.logs(args.run, root=args.root, lines=args.lines)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llada", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one run (resumes if its run directory has a checkpoint)")
    p.add_argument("overrides", nargs="*", help="group choices (model=cpu-1m) and key=value overrides")
    p.set_defaults(func=_cmd_train)
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
    q.add_argument("--executor", choices=["slurm", "local", "debug"], default=None)
    q.add_argument("--dry-run", action="store_true", help="print each run, its action and the total compute")
    q.add_argument("--wait", action="store_true", help="block until every submitted run has finished")
    q.add_argument("overrides", nargs="*", help="overrides for every run; name=/root=/cluster= for the sweep")
    q = sweep_sub.add_parser("status", help="a table of every run: state, step, latest val loss, job, log")
    q.add_argument("spec")
    q.add_argument("overrides", nargs="*")
    q = sweep_sub.add_parser("cancel", help="cancel active runs whose name or signature contains FILTER")
    q.add_argument("spec")
    q.add_argument("filter", nargs="?", default="")
    q.add_argument("overrides", nargs="*")
    q = sweep_sub.add_parser("logs", help="the log of one run (directory, signature or name)")
    q.add_argument("run")
    q.add_argument("--root", default="runs/sweeps")
    q.add_argument("--lines", type=int, default=40)
    p.set_defaults(func=_cmd_sweep)
    from llada_lightning.inference.cli import register as register_inference
    from llada_lightning.scaling.cli import register as register_scaling

    register_inference(sub)
    register_scaling(sub)
    p = sub.add_parser("demo", help="train a tiny LLaDA and a tiny ARM on the embedded corpus, print both losses")
    p.add_argument("overrides", nargs="*", help="extra overrides applied to both runs")
    p.add_argument("--runs-root", default="runs/demo")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may follow options (`sweep launch SPEC --executor slurm key=value`)
        flags = [e for e in extra if e.startswith("-")]
        if flags or not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(flags or extra)}")
        args.overrides = [*args.overrides, *extra]
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"llada: config error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"llada: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
