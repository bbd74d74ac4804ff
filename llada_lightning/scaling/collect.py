"""The points of a scaling study from a sweep directory: every run (`**/result.json`, or a run directory without one).

Nothing is dropped silently and no value is replaced silently. Each row has a `status`:
- `done`: usable in fits;
- `failed`: result.json says so, or it has no validation loss;
- `invalid`: a value is missing, not a number or not positive, or C contradicts 6 N D (validate.py);
- `duplicate`: the same run (signature) or the same values as an earlier row;
- `diverged`: non-finite loss, loss above ln(vocab) + 1 (worse than a uniform guess by a nat), or above
  `diverge_factor` x the median of the other runs of its objective and budget;
- `missing`: a run directory (it has `config.yaml`) without a result.json (unfinished, running or lost);
- `unreadable`: a result.json that does not parse.
with a `reason_kind` (counted by `Table.reason_counts()`) and a `reason` naming the row or run directory and the
column. Fits use `Table.usable()`; `Table.report()` lists the rest. Values derived rather than read (C = 6 N D
where a CSV gives no C) are counted in `Table.notes`.

Columns: N is the non-embedding parameter count by default (Kaplan et al. 2020; SMDM), D the training tokens, C the
training FLOPs in the named convention ("6N": 6 N D; "full": every matmul, the head and attention), budget the FLOP
budget the run was launched with (the IsoFLOP grouping key; NaN for runs launched by step count).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from llada_lightning import rundir
from llada_lightning.flops import CONVENTIONS
from llada_lightning.rundir import RunResult
from llada_lightning.scaling.points_csv import read_points
from llada_lightning.scaling.table import (
    COLUMNS,
    DIVERGE_FACTOR,
    Table,
    empty_row,
    mark,
    mark_diverged,
    mark_duplicates,
    to_float,
    write_csv,
)
from llada_lightning.scaling.validate import budget_problem, compute_problem, first_problem

__all__ = ["COLUMNS", "Table", "collect", "read_points", "write_csv"]

RESULT = rundir.RESULT
RUN_CONFIG = rundir.CONFIG


def _row_from_config(config_path: Path) -> dict:
    text = config_path.read_text(errors="replace")
    return {
        "objective": rundir.yaml_value(text, "objective", "name") or "",
        "model": rundir.yaml_value(text, "model", "name") or "",
        "budget": to_float(rundir.yaml_value(text, "train", "flops_budget")),
        "convention": rundir.yaml_value(text, "train", "flops_convention") or "",
        "seed": to_float(rundir.yaml_value(text, "train", "seed")),
    }


def _vocab_of(run_dir: Path) -> float:
    cfg = run_dir / RUN_CONFIG
    if not cfg.is_file():
        return float("nan")
    text = cfg.read_text(errors="replace")
    return to_float(rundir.yaml_value(text, "model", "vocab_size") or rundir.yaml_value(text, "data", "vocab_size"))


def _row_from_result(res: RunResult, run_dir: Path, convention: str | None, params: str) -> dict:
    row = empty_row(run_dir)
    own = res.get("flops_convention") or "6N"  # the convention of its budget
    if convention is not None and convention not in CONVENTIONS:
        raise ValueError(f"convention must be '6N' or 'full', got {convention!r}")
    conv = convention or (own if own in CONVENTIONS else "6N")
    c_key = "flops_6N" if conv == "6N" else "flops_full"
    row.update(
        objective=str(res.get("objective") or ""),
        model=str(res.get("model") or ""),
        N=to_float(res.get("N_nonemb" if params == "nonemb" else "N_total")),
        N_total=to_float(res.get("N_total")),
        D=to_float(res.get("tokens")),
        C=to_float(res.get(c_key)),
        budget=to_float(res.get("flops_budget")),
        loss=to_float(res.get("val_loss")),
        bpb=to_float(res.get("val_bpb")),
        seed=to_float(res.get("seed")),
        U=to_float(res.get("unique_tokens")),
        epochs=to_float(res.get("data_epochs")),
        convention=conv,
        signature=str(res.get("signature") or ""),
        status="done",
    )
    where = f"{run_dir}: result.json"
    if own not in CONVENTIONS and res.get("status") == "done":
        mark(row, "invalid", "unknown flops_convention", f"{where} flops_convention = {own!r} is not 6N or full")
        return row
    if res.get("status") != "done":
        detail = res.get("error") or res.get("message") or ""
        mark(
            row,
            "failed",
            f"status {res.get('status')!r}",
            f"result status {res.get('status')!r}" + (f": {detail}" if detail else ""),
        )
        return row
    if res.get("val_loss") is None:
        mark(row, "failed", "no val_loss", "no val_loss in result.json")
        return row
    needed = {k: res.get(k) for k in ("N_nonemb", "tokens", "val_loss")}
    needed["N_total" if params == "total" else "N_nonemb"] = res.get("N_total" if params == "total" else "N_nonemb")
    needed[c_key] = res.get(c_key)
    if res.get("flops_budget") is not None:
        needed["flops_budget"] = res.get("flops_budget")
    found = first_problem(needed, loss_column="val_loss")
    if found is None:  # C in the 6N convention is 6 x non-embedding N x tokens, whatever N the fit uses
        c6 = to_float(res.get("flops_6N"))
        found = compute_problem("6N", c6, to_float(res.get("N_nonemb")), row["D"], ("flops_6N", "N_nonemb", "tokens"))
        if found is None and conv == "full":
            found = compute_problem(
                "full", row["C"], to_float(res.get("N_nonemb")), row["D"], (c_key, "N_nonemb", "tokens")
            )
        if found is None:  # the compute it spent, in its budget's convention, belongs to its budget
            spent = to_float(res.get("flops_6N" if own == "6N" else "flops_full"))
            found = budget_problem(spent, row["budget"], ("flops_6N" if own == "6N" else "flops_full", "flops_budget"))
    if found is not None:
        mark(row, "invalid", found[0], f"{where} {found[1]}")
    return row


def _under(root: Path, name: str) -> list[Path]:
    """Files called `name` below `root`, outside hidden directories (a sweep's `.trunks/`, `.submitit/`): a WSD
    shared trunk is not a run of the study, its branches are."""
    return sorted(p for p in root.glob(f"**/{name}") if not any(x.startswith(".") for x in p.relative_to(root).parts))


def collect(
    sweep_dir: str | Path,
    *,
    convention: str | None = None,
    params: str = "nonemb",
    vocab_size: int | None = None,
    diverge_factor: float = DIVERGE_FACTOR,
    verbose: bool = True,
) -> Table:
    """Read every `**/result.json` under `sweep_dir` (and note run directories without one) into a Table.

    `convention` picks the C column ("6N" or "full"; default: each run's own `flops_convention`).
    `params="nonemb"` (default) or `"total"` picks N. `vocab_size` overrides the vocabulary read from each run's
    config.yaml for the ln(V) + 1 divergence test. With `verbose`, prints the report of excluded runs.
    """
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep directory {root} does not exist")
    if params not in ("nonemb", "total"):
        raise ValueError(f"params must be 'nonemb' or 'total', got {params!r}")
    rows: list[dict] = []
    vocab: list[float] = []
    for path in _under(root, RESULT):
        run_dir = path.parent
        try:
            res = json.loads(path.read_text())
            if not isinstance(res, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            row = empty_row(run_dir)
            if (run_dir / RUN_CONFIG).is_file():
                row.update(_row_from_config(run_dir / RUN_CONFIG))
            mark(row, "unreadable", f"{RESULT} does not parse", f"{RESULT} does not parse: {err}")
            rows.append(row)
            vocab.append(float("nan"))
            continue
        row = _row_from_result(RunResult.from_dict(res), run_dir, convention, params)
        if (run_dir / RUN_CONFIG).is_file():  # a failure record (sweep/job.py) holds only status and error
            for key, value in _row_from_config(run_dir / RUN_CONFIG).items():
                if row[key] == "" or (isinstance(row[key], float) and math.isnan(row[key])):
                    row[key] = value
        rows.append(row)
        vocab.append(float(vocab_size) if vocab_size else _vocab_of(run_dir))
    for cfg in _under(root, RUN_CONFIG):
        if (cfg.parent / RESULT).is_file():
            continue
        row = empty_row(cfg.parent)
        row.update(_row_from_config(cfg))
        mark(row, "missing", f"no {RESULT}", f"no {RESULT} (not finished, still running, or lost)")
        rows.append(row)
        vocab.append(float("nan"))
    mark_duplicates(rows, lambda r: r["run_dir"])
    mark_diverged(rows, vocab, diverge_factor)
    table = Table(rows)
    if verbose:
        print(table.report())
    return table
