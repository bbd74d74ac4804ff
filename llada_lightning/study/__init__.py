"""Studies: a design (which runs, from a few parameters) plus its analysis (fits, plots) plus its report.

In the manner of OLMo-core's model ladder (allenai/OLMo-core, `olmo_core/model_ladder.py`): a study is an object
built from a handful of parameters, not a hand-written list of runs. This layer sits above `sweep/` (which launches
and tracks runs) and `scaling/` (which fits them); neither imports it.

- `design.py`: the `Design` base and its registry `DESIGNS` (`isoflop` is `isoflop.IsoFLOPDesign`), `load_design`;
  each design owns its analysis (`Design.analyze`)
- `schedules.py` + `schedule_report.py`: the masking-schedule ablation (`llada study schedules`) and its analysis
- `data_constrained.py` + `data_constrained_report.py`: repeated-data scaling (`llada study data-constrained`)
- `placement.py`: each budget's size window, placed around the optimum predicted from finished smaller budgets
- `study.py`: `Study` (a design in an output directory): `plan`, `launch`, `status`, `report`
- `timing.py`: measured step times, for the wall-time estimate of `--dry-run`
- `cli.py`: `llada study [DESIGN] --dry-run | (launch) | --status | --report`
"""

from llada_lightning.study.design import DESIGNS, Design, load_design
from llada_lightning.study.study import Study

__all__ = ["DESIGNS", "Design", "Study", "load_design"]
