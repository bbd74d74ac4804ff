"""Scaling-law analysis over result files: numpy/scipy only (no torch), usable on a laptop with just the CSV.

- `collect` (a sweep directory) / `read_points` (a CSV) -> `Table` (every row, with a status and reason;
  `write_csv` writes it atomically); `requirements` says what each fit needs
- `fit_isoflop` (Chinchilla Approach 2), `fit_frontier` (L = E + A C^-alpha), `fit_parametric` (Approach 3)
- `compute_multiplier` (k with L_MDM(k C) = L_ARM(C)), `optimal_size_ratio` (N*_MDM / N*_ARM)
- `fit_data_constrained` (Muennighoff et al. 2023: repeated data), `critical_compute`, `data_half_life`
- `bootstrap` (percentile intervals), `fit_study` (all of the above as one JSON-serialisable dict)
"""

from llada_lightning.scaling.bootstrap import BootstrapResult, bootstrap
from llada_lightning.scaling.collect import Table, collect, read_points, write_csv
from llada_lightning.scaling.data_constrained import (
    DataConstrainedFit,
    bootstrap_data_constrained,
    data_half_life,
    fit_data_constrained,
)
from llada_lightning.scaling.frontier import Frontier, fit_frontier
from llada_lightning.scaling.isoflop import BudgetFit, IsoFLOPFit, fit_isoflop, fit_parabola
from llada_lightning.scaling.multiplier import compute_multiplier, optimal_size_ratio
from llada_lightning.scaling.parametric import ParametricFit, fit_parametric, parametric_objective, start_grid
from llada_lightning.scaling.repeated_data import critical_compute
from llada_lightning.scaling.study import fit_study

__all__ = [
    "BootstrapResult",
    "BudgetFit",
    "DataConstrainedFit",
    "Frontier",
    "IsoFLOPFit",
    "ParametricFit",
    "Table",
    "bootstrap",
    "bootstrap_data_constrained",
    "collect",
    "compute_multiplier",
    "critical_compute",
    "data_half_life",
    "fit_data_constrained",
    "fit_frontier",
    "fit_isoflop",
    "fit_parabola",
    "fit_parametric",
    "fit_study",
    "optimal_size_ratio",
    "parametric_objective",
    "read_points",
    "start_grid",
    "write_csv",
]
