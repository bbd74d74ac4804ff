"""`llada sample` and `llada eval` (registered into the main parser by `register`)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the inference subcommands to the `llada` parser."""
