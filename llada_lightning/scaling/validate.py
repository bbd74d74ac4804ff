"""Validation of study points: every value checked, none replaced silently, every rejection named by row and column.

A value is parsed by `number`: missing (empty cell, absent key), not a number (text, a list, a boolean), or a
float. A row is `invalid` when a value it needs is missing, not a number, not finite (except the loss: a non-finite
loss is a `diverged` run) or not positive, or when its compute contradicts its size and tokens: in the 6N convention
C must equal 6 N D within CONSISTENCY_RTOL (our runs write C = 6 N D exactly; 2% admits published points rounded to
2-3 significant digits, and still rejects the full convention's C, which exceeds 6 N D by 3-10% at 73M-1.6B
parameters: Hoffmann et al. 2022, Table A4, and by far more for small models); in the full convention C may not fall
below 6 N D. Its compute must also match the FLOP budget it is grouped under (in the budget's convention): at most
CONSISTENCY_RTOL above it (a run cannot spend more) and at most BUDGET_SHORTFALL below it (runs floor their step
count, and random-length steps spend ~0.5% less: 20% admits runs of 5 steps and more). A row is a `duplicate` when it
repeats another: the same run signature, or every value equal, or (with a seed) the same run with another loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

CONSISTENCY_RTOL = 0.02
BUDGET_SHORTFALL = 0.2


def number(raw) -> tuple[float, str | None]:
    """(value, problem): problem is None, "missing" or "not a number"."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return float("nan"), "missing"
    if isinstance(raw, bool):
        return float("nan"), "not a number"
    if isinstance(raw, int | float):
        return float(raw), None
    if isinstance(raw, str):
        try:
            return float(raw.strip()), None
        except ValueError:
            return float("nan"), "not a number"
    return float("nan"), "not a number"


def value_problem(column: str, raw, *, allow_non_finite: bool = False) -> tuple[str, str] | None:
    """(kind, detail) of what is wrong with one value that must be a positive number, or None."""
    value, problem = number(raw)
    if problem == "missing":
        return f"{column} missing", f"column {column} is empty"
    if problem is not None:
        return f"{column} not a number", f"column {column} = {raw!r} is not a number"
    if not math.isfinite(value):
        return None if allow_non_finite else (f"{column} not finite", f"column {column} = {raw!r} is not finite")
    if value <= 0:
        return f"{column} not positive", f"column {column} = {raw!r} is not positive"
    return None


def first_problem(values: Mapping[str, object], *, loss_column: str | None = None) -> tuple[str, str] | None:
    """The first problem among `values` (column -> raw value), each a positive number; the loss may be non-finite."""
    for column, raw in values.items():
        found = value_problem(column, raw, allow_non_finite=column == loss_column)
        if found is not None:
            return found
    return None


def compute_problem(convention: str, c: float, n: float, d: float, names=("C", "N", "D")) -> tuple[str, str] | None:
    """(kind, detail) when C contradicts 6 N D in its convention (see the module docstring), else None."""
    if not all(math.isfinite(v) and v > 0 for v in (c, n, d)):
        return None
    six_nd = 6.0 * n * d
    ratio = c / six_nd
    cn, nn, dn = names
    if convention == "6N" and abs(ratio - 1.0) > CONSISTENCY_RTOL:
        return (
            f"{cn} inconsistent with 6 {nn} {dn}",
            f"column {cn} = {c:.4g} differs from 6 {nn} {dn} = {six_nd:.4g} by {100 * (ratio - 1):+.1f}% "
            f"(> {100 * CONSISTENCY_RTOL:g}%): C must be in the 6N convention, or pass --convention full",
        )
    if convention == "full" and ratio < 1.0 - CONSISTENCY_RTOL:
        return (
            f"{cn} below 6 {nn} {dn}",
            f"column {cn} = {c:.4g} is below 6 {nn} {dn} = {six_nd:.4g}: full-convention FLOPs include 6 N D",
        )
    return None


def budget_problem(c: float, budget: float, names=("C", "budget")) -> tuple[str, str] | None:
    """(kind, detail) when the compute C does not belong to the budget it is grouped under, else None."""
    if not (math.isfinite(c) and math.isfinite(budget) and c > 0 and budget > 0):
        return None
    ratio = c / budget
    if ratio > 1.0 + CONSISTENCY_RTOL or ratio < 1.0 - BUDGET_SHORTFALL:
        cn, bn = names
        return (
            f"{cn} inconsistent with {bn}",
            f"column {cn} = {c:.4g} is {100 * (ratio - 1):+.1f}% off column {bn} = {budget:.4g} (allowed: "
            f"-{100 * BUDGET_SHORTFALL:g}% .. +{100 * CONSISTENCY_RTOL:g}%): the run belongs to another budget",
        )
    return None
