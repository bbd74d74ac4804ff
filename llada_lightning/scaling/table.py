"""The points of a study as a table: one row per run or CSV row, with a status and the reason it is not used.

Statuses (collect.py for sweep directories, points_csv.py for CSVs; validate.py for the value checks):
`done` (used in fits), `failed`, `invalid`, `duplicate`, `diverged`, `missing`, `unreadable`; each excluded row has a
`reason_kind` (counted by `Table.reason_counts()`) and a `reason` naming the row or run directory and the column.
Values derived rather than read (C = 6 N D where a CSV gives no C) are counted in `Table.notes`.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llada_lightning.io import atomic_write_text
from llada_lightning.scaling.validate import number

DIVERGE_FACTOR = 2.0

COLUMNS = (
    "objective",
    "model",
    "N",
    "N_total",
    "D",
    "C",
    "budget",
    "loss",
    "bpb",
    "seed",
    "U",  # distinct training tokens drawn from (data.unique_tokens, or the whole split)
    "epochs",  # data epochs seen: D / U
    "convention",
    "status",
    "reason_kind",
    "reason",
    "signature",
    "run_dir",
)
NUMERIC = frozenset({"N", "N_total", "D", "C", "budget", "loss", "bpb", "seed", "U", "epochs"})


@dataclass
class Table:
    """Rows of a study (dicts keyed by COLUMNS); `column()` gives numpy arrays."""

    rows: list[dict]
    notes: list[str] = field(default_factory=list)  # values derived rather than read, with counts

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> np.ndarray:
        if name in NUMERIC:
            return np.array([to_float(r.get(name)) for r in self.rows], dtype=np.float64)
        return np.array([str(r.get(name) or "") for r in self.rows], dtype=object)

    def select(self, *, objective: str | None = None, status: str | None = None) -> Table:
        return Table(
            [
                r
                for r in self.rows
                if (objective is None or r["objective"] == objective) and (status is None or r["status"] == status)
            ],
            list(self.notes),
        )

    def usable(self) -> Table:
        return self.select(status="done")

    def objectives(self) -> list[str]:
        return sorted({r["objective"] for r in self.rows if r["objective"]})

    def excluded(self) -> list[dict]:
        """The rows left out of fits, with why."""
        keys = ("objective", "model", "status", "reason_kind", "reason", "loss", "budget", "run_dir")
        return [{k: r.get(k) for k in keys} for r in self.rows if r["status"] != "done"]

    def reason_counts(self) -> dict[str, dict[str, int]]:
        """Excluded rows counted by status, then by the kind of reason."""
        out: dict[str, dict[str, int]] = {}
        for r in self.rows:
            if r["status"] != "done":
                kinds = out.setdefault(r["status"], {})
                kind = r.get("reason_kind") or r["status"]
                kinds[kind] = kinds.get(kind, 0) + 1
        return out

    def status_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    def report(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(self.status_counts().items()))
        lines = [f"{len(self)} runs: {counts or 'none'}"]
        for status, kinds in sorted(self.reason_counts().items()):
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
            lines.append(f"  {status} by reason: {detail}")
        lines += [f"  note: {n}" for n in self.notes]
        for r in self.excluded():
            where = r["run_dir"] or r["model"] or "?"
            lines.append(f"  excluded [{r['status']}] {r['objective'] or '?'} {where}: {r['reason']}")
        return "\n".join(lines)


def to_float(v) -> float:
    """A number, or NaN for anything else (only for values already validated, or optional ones)."""
    return number(v)[0]


def mark(row: dict, status: str, kind: str, reason: str) -> None:
    row["status"], row["reason_kind"], row["reason"] = status, kind, reason


def empty_row(run_dir: Path) -> dict:
    row = {k: float("nan") if k in NUMERIC else "" for k in COLUMNS}
    row["run_dir"] = str(run_dir)
    return row


VALUE_KEYS = ("objective", "model", "N", "D", "C", "budget", "loss", "seed")


def mark_duplicates(rows: list[dict], label, value_keys: tuple[str, ...] = VALUE_KEYS) -> None:
    """A second row of the same run signature (or, without one, with every value in `value_keys` equal) is a
    `duplicate`."""
    seen: dict[tuple, dict] = {}
    for row in sorted(rows, key=lambda r: r["status"] != "done"):  # a done row wins over a failed copy
        if row["status"] not in ("done", "failed"):
            continue
        if row["signature"]:
            key: tuple = ("signature", row["signature"])
        elif math.isfinite(row["seed"]):  # a seed names the run: the same run twice, whatever its loss
            key = tuple(repr(row.get(k)) for k in value_keys if k != "loss")
        else:
            key = tuple(repr(row.get(k)) for k in value_keys)
        first = seen.get(key)
        if first is None:
            seen[key] = row
        else:
            if row["signature"]:
                what = "the same signature"
            elif math.isfinite(row["seed"]) and row["loss"] != first["loss"]:
                what = "the same run (seed) with another loss"
            else:
                what = "the same values"
            mark(row, "duplicate", f"duplicate ({what[4:]})", f"{label(row)}: {what} as {label(first)}")


def mark_diverged(rows: list[dict], vocab: list[float], factor: float) -> None:
    """Flag non-finite losses, losses above ln(V) + 1, and losses above `factor` x the median of their peers."""
    for row, v in zip(rows, vocab, strict=True):
        if row["status"] != "done":
            continue
        loss = row["loss"]
        if not math.isfinite(loss):
            mark(row, "diverged", "non-finite loss", f"non-finite val_loss ({loss})")
        elif math.isfinite(v) and v > 1 and loss > math.log(v) + 1:
            mark(
                row,
                "diverged",
                "loss above ln(vocab) + 1",
                f"val_loss {loss:.4g} > ln(vocab {int(v)}) + 1 = {math.log(v) + 1:.4g}",
            )
    # relative test among the runs of one objective and budget, each against the median of the others
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["status"] == "done" and math.isfinite(row["budget"]):
            groups.setdefault((row["objective"], round(math.log10(row["budget"]), 2)), []).append(row)
    for members in groups.values():
        losses = np.array([m["loss"] for m in members])
        for i, row in enumerate(members):
            others = np.delete(losses, i)
            if len(others) == 0:
                continue
            med = float(np.median(others))
            if row["loss"] > factor * med:
                mark(
                    row,
                    "diverged",
                    f"loss above {factor:g} x its budget's median",
                    f"val_loss {row['loss']:.4g} > {factor:g} x median {med:.4g} of its budget's other runs",
                )


def write_csv(table: Table, path: str | Path) -> Path:
    """Write the table (all rows, status and reason included) as CSV, atomically (temp file + os.replace)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in table.rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in COLUMNS})
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def _csv_cell(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return "" if v is None else v
