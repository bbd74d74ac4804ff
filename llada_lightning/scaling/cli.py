"""`llada scaling collect|fit|plot` and `llada study` (registered into the main parser by `register`)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the scaling subcommands to the `llada` parser."""
