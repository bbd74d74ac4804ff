"""Points from a CSV (published points, or a points.csv written by `llada scaling collect`), validated row by row."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from llada_lightning.flops import CONVENTIONS
from llada_lightning.scaling.table import (
    DIVERGE_FACTOR,
    VALUE_KEYS,
    Table,
    empty_row,
    mark,
    mark_diverged,
    mark_duplicates,
    to_float,
)
from llada_lightning.scaling.validate import budget_problem, compute_problem, first_problem

ALIASES = {
    "N": ("n", "n_params", "params", "n_nonemb", "parameters", "model_size"),
    "D": ("d", "tokens", "n_tokens", "data"),
    "C": ("c", "compute", "flops", "flops_6n"),
    "loss": ("loss", "val_loss", "l"),
    "budget": ("budget", "flops_budget", "c_budget"),
    "objective": ("objective", "model_type", "family"),
    "status": ("status",),
    "model": ("model", "name"),
    "seed": ("seed",),
    "U": ("u", "unique_tokens", "u_d"),
    "epochs": ("epochs", "data_epochs"),
    "convention": ("convention", "flops_convention"),
    "signature": ("signature",),
}


def read_points(
    csv_path: str | Path,
    *,
    objective: str | None = None,
    convention: str | None = None,
    diverge_factor: float = DIVERGE_FACTOR,
) -> Table:
    """Points from a CSV: loss plus N (or n_params), D (or tokens) and/or C (or compute, flops); optional objective,
    budget, seed, status, convention and signature columns (points.csv of `llada scaling collect` reads back as is).

    Every row is used or marked with why not (validate.py): a needed value missing, not a number, not finite or not
    positive, C contradicting 6 N D, a repeated row. Where a row gives no C but N and D, C = 6 N D (the 6N convention
    of published points, Hoffmann et al. 2022); where it gives C and N but no D, D = C / (6 N); both are counted in
    `Table.notes`. Without a budget column, budget is C, so the points of one IsoFLOP profile group together (within
    2%). `convention` ("6N", default, or "full") applies to rows without a convention column. `objective` fills rows
    that have none (default "points"). Rows are diagnosed like runs (non-finite or outlying losses are `diverged`).
    """
    if convention is not None and convention not in CONVENTIONS:
        raise ValueError(f"convention must be '6N' or 'full', got {convention!r}")
    text = Path(csv_path).read_text()
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise ValueError(f"{csv_path}: empty CSV")
    lower = {f.strip().lower(): f for f in reader.fieldnames if f is not None}

    def find(canon: str) -> str | None:
        for alias in (canon.lower(), *ALIASES.get(canon, ())):
            if alias in lower:
                return lower[alias]
        return None

    cols = {k: find(k) for k in ALIASES}
    if cols["loss"] is None:
        raise ValueError(
            f"{csv_path}: no loss column (expected one of {ALIASES['loss']}); columns: {reader.fieldnames}"
        )
    if cols["C"] is None and (cols["N"] is None or cols["D"] is None):
        raise ValueError(
            f"{csv_path}: need a compute column (C, compute, flops) or both N and D; got {reader.fieldnames}"
        )
    rows = []
    derived = {"C": 0, "D": 0}
    for i, rec in enumerate(reader):
        where = f"row {i + 1} (line {reader.line_num})"
        cell = {k: (rec.get(col) if col else None) for k, col in cols.items()}
        row = empty_row(Path(""))
        row["run_dir"] = ""
        conv = (cell["convention"] or "").strip() or convention or "6N"
        row.update(
            objective=(cell["objective"] or "").strip() or objective or "points",
            model=(cell["model"] or "").strip() or f"row{i + 1}",
            N=to_float(cell["N"]),
            D=to_float(cell["D"]),
            C=to_float(cell["C"]),
            loss=to_float(cell["loss"]),
            seed=to_float(cell["seed"]),
            U=to_float(cell["U"]),
            epochs=to_float(cell["epochs"]),
            convention=conv,
            signature=(cell["signature"] or "").strip(),
            status=(cell["status"] or "").strip() or "done",
        )
        budget_raw = cell["budget"]
        rows.append(row)
        if row["status"] != "done":
            row["budget"] = to_float(budget_raw)
            mark(row, row["status"], f"status {row['status']!r}", f"{where}: status {row['status']!r} in the CSV")
            continue
        names = {"N": cols["N"], "D": cols["D"], "C": cols["C"], "loss": cols["loss"], "budget": cols["budget"]}
        needed: dict[str, object] = {names["loss"]: cell["loss"]}
        if conv not in CONVENTIONS:
            mark(
                row,
                "invalid",
                "unknown convention",
                f"{where}: column {cols['convention']} = {conv!r} is not 6N or full",
            )
            continue
        for key in ("N", "D", "C"):  # a column that exists must hold a value in every row, except where derivable
            if cols[key] is not None:
                derivable = conv == "6N" and (
                    (key == "C" and cell["N"] and cell["D"]) or (key == "D" and cell["N"] and cell["C"])
                )
                if not (derivable and not (cell[key] or "").strip()):
                    needed[names[key]] = cell[key]
        if cols["budget"] is not None and (budget_raw or "").strip():
            needed[names["budget"]] = budget_raw
        found = first_problem(needed, loss_column=names["loss"])
        if found is not None:
            mark(row, "invalid", found[0], f"{where}: {found[1]}")
            row["budget"] = to_float(budget_raw)
            continue
        if not math.isfinite(row["C"]) and conv == "6N" and math.isfinite(row["N"]) and math.isfinite(row["D"]):
            row["C"] = 6.0 * row["N"] * row["D"]  # C = 6 N D (Kaplan et al. 2020)
            derived["C"] += 1
        elif not math.isfinite(row["D"]) and conv == "6N" and math.isfinite(row["N"]) and math.isfinite(row["C"]):
            row["D"] = row["C"] / (6.0 * row["N"])
            derived["D"] += 1
        else:
            found = compute_problem(conv, row["C"], row["N"], row["D"], (names["C"], names["N"], names["D"]))
            if found is not None:
                mark(row, "invalid", found[0], f"{where}: {found[1]}")
        row["budget"] = to_float(budget_raw) if cols["budget"] else row["C"]
        found = budget_problem(row["C"], row["budget"], (names["C"] or "C", names["budget"] or "budget"))
        if found is not None and row["status"] == "done":
            mark(row, "invalid", found[0], f"{where}: {found[1]}")
    notes = [
        f"{what} in {count} row(s) that give none"
        for what, count in (("C derived as 6 N D", derived["C"]), ("D derived as C / (6 N)", derived["D"]))
        if count
    ]
    position = {id(r): i + 1 for i, r in enumerate(rows)}
    keys = tuple(k for k in VALUE_KEYS if k != "model" or cols["model"])  # generated names (row7) never repeat
    mark_duplicates(rows, lambda r: f"row {position[id(r)]}", keys)
    mark_diverged(rows, [float("nan")] * len(rows), diverge_factor)
    return Table(rows, notes)
