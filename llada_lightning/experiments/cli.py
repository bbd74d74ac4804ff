"""`llada experiment reversal [--quick] [--out DIR] [--seeds N] [--threads N] [--parallel N]`.

No torch at module level: `llada --help` stays fast.
"""

from __future__ import annotations

import argparse

DEFAULT_OUT = "runs/experiments/reversal"


def _cmd_reversal(args: argparse.Namespace) -> int:
    from llada_lightning.experiments.reversal import run_experiment

    run_experiment(args.out, quick=args.quick, seeds=args.seeds, threads=args.threads, parallel=args.parallel)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `experiment` (with its `reversal` command) to the main parser's subcommands."""
    p = sub.add_parser("experiment", help="self-contained experiments: reversal (the reversal curse, LLaDA vs ARM)")
    experiments = p.add_subparsers(dest="experiment_command", required=True)
    q = experiments.add_parser(
        "reversal",
        help="train LLaDA and the ARM on one-directional synthetic facts, score forward and reverse questions",
        description="Train LLaDA and a matched ARM (same model, data and steps) on synthetic facts stated one way "
        "and score forward and reverse questions over seeds; finished runs under --out are reused.",
    )
    q.add_argument("--quick", action="store_true", help="the smoke-test preset: 1 seed, a handful of facts (~1 min)")
    q.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    q.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: the preset's, 3 full / 1 quick)")
    q.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (default 1)")
    q.add_argument("--parallel", type=int, default=1, help="runs trained at once, each in its own process (default 1)")
    q.set_defaults(func=_cmd_reversal)
