"""`llada bench [--quick] [--threads N] [--out FILE]`: this machine's throughput in one table and its JSON
(bench/suite.py)."""

from __future__ import annotations

import argparse
from typing import Any


def _cmd_bench(args: argparse.Namespace) -> int:
    from llada_lightning.bench.suite import main

    if args.threads is not None and args.threads < 1:
        from llada_lightning.config.errors import ConfigError

        raise ConfigError(f"--threads {args.threads} must be >= 1")
    return main(args.quick, args.out, args.threads)


def register(sub: Any) -> None:
    """Add `llada bench` to the main parser's subcommands."""
    from llada_lightning.bench import suite

    p = sub.add_parser(
        "bench",
        help="throughput on this machine: training vs a bare loop, MFU, loader, sampler, sweep, fit, torch.compile",
        description=suite.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="every row shrunk to run in well under a minute")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 with --quick, else torch's)")
    p.add_argument("--out", default=None, help="the JSON file (default: runs/bench/bench-<mode>-<time>.json)")
    p.set_defaults(func=_cmd_bench)
