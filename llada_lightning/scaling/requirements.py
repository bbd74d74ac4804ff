"""What each fit needs from the data: the one table of minimums that the fits, the summary and the README follow.

Below a minimum the fit is not attempted (or its result is not used) and the reason is a warning in fit.json and
the summary; a sweep from which no law at all can be fitted is an error (`llada scaling fit` exits 2).

| quantity                          | needs                                                    | otherwise            |
|-----------------------------------|----------------------------------------------------------|----------------------|
| IsoFLOP parabola of one budget    | MIN_SIZES distinct N at that budget                      | budget skipped       |
| its vertex N*, L*                 | a convex parabola whose vertex lies inside the sizes     | budget left out      |
| exponents a, b (N* ~ C^a)         | MIN_BUDGETS budgets with a usable vertex                 | no exponents         |
| frontier L*(C) = A C^-alpha       | MIN_FRONTIER_POINTS budgets (IsoFLOP vertices, or when   | no frontier, no k(C) |
|                                   | no vertex fit exists the lowest loss of each budget with |                      |
|                                   | MIN_MINIMUM_SIZES sizes)                                 |                      |
| frontier with E (E + A C^-alpha)  | MIN_IRREDUCIBLE_POINTS frontier points (frontier="auto") | pure power law       |
| held-out frontier check           | one frontier point more than the law's minimum           | no check             |
| parametric L(N, D)                | MIN_PARAMETRIC_POINTS points, >= 2 distinct N and D      | no parametric law    |
| k(C), N*_MDM / N*_ARM             | frontiers (and IsoFLOP exponents) of both objectives     | no comparison        |
| any bootstrap interval            | MIN_TAIL / q resamples, q = (1 - level) / 2 (80 at 95%)  | unreliable           |
| residual-bootstrap interval       | >= 1 residual degree of freedom: a budget with           | unreliable           |
|                                   | MIN_SIZES + 1 sizes (or a repeated size)                 |                      |

A frontier, k(C) or a band is never drawn from runs without a FLOP budget (runs launched by step count): those
support only the parametric law.
"""

from __future__ import annotations

import math

MIN_SIZES = 3  # a parabola has 3 coefficients
MIN_BUDGETS = 2  # a line through the vertices has 2
MIN_FRONTIER_POINTS = 2  # the pure power law has 2 parameters
MIN_MINIMUM_SIZES = 2  # a budget's lowest loss stands for its optimum only if it compares sizes
MIN_IRREDUCIBLE_POINTS = 5  # E + A C^-alpha has 3: fitted only with 2 spare degrees of freedom
MIN_PARAMETRIC_POINTS = 10  # the 5-parameter law, with 5 spare degrees of freedom
MIN_TAIL = 2  # resamples beyond each bound of a percentile interval (B >= MIN_TAIL / q)
NEGLIGIBLE = 1e-3  # a loss term (E, A/N^alpha, B/D^beta) below 0.1% of the smallest loss is at its bound 0


def min_resamples(level: float) -> int:
    """The fewest bootstrap resamples for a percentile interval at `level`: MIN_TAIL in each tail."""
    q = (1.0 - level) / 2.0
    return math.ceil(MIN_TAIL / q - 1e-9) if q > 0 else 0
