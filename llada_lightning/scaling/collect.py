"""The points of a scaling study: every run of a sweep (`**/result.json`), or an external CSV of published points.

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

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llada_lightning.io import atomic_write_text
from llada_lightning.scaling.validate import budget_problem, compute_problem, first_problem, number

RESULT = "result.json"
RUN_CONFIG = "config.yaml"
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
    "convention",
    "status",
    "reason_kind",
    "reason",
    "signature",
    "run_dir",
)
NUMERIC = frozenset({"N", "N_total", "D", "C", "budget", "loss", "bpb", "seed"})

# Accepted spellings in external CSVs (case-insensitive), first match wins.
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
    "convention": ("convention", "flops_convention"),
    "signature": ("signature",),
}
CONVENTIONS = ("6N", "full")


@dataclass
class Table:
    """Rows of a study (dicts keyed by COLUMNS); `column()` gives numpy arrays."""

    rows: list[dict]
    notes: list[str] = field(default_factory=list)  # values derived rather than read, with counts

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> np.ndarray:
        if name in NUMERIC:
            return np.array([_float(r.get(name)) for r in self.rows], dtype=np.float64)
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


def _float(v) -> float:
    """A number, or NaN for anything else (only for values already validated, or optional ones)."""
    return number(v)[0]


def _mark(row: dict, status: str, kind: str, reason: str) -> None:
    row["status"], row["reason_kind"], row["reason"] = status, kind, reason


def _yaml_value(text: str, section: str, key: str) -> str | None:
    """`key` inside top-level `section:` of a plain block-style YAML (the run's resolved config.yaml)."""
    m = re.search(rf"^{re.escape(section)}:\s*\n((?:[ \t]+.*\n?|\s*\n)*)", text, flags=re.M)
    if not m:
        return None
    k = re.search(rf"^[ \t]+{re.escape(key)}:[ \t]*(\S.*?)\s*$", m.group(1), flags=re.M)
    return k.group(1).strip("'\"") if k else None


def _row_from_config(config_path: Path) -> dict:
    text = config_path.read_text(errors="replace")
    return {
        "objective": _yaml_value(text, "objective", "name") or "",
        "model": _yaml_value(text, "model", "name") or "",
        "budget": _float(_yaml_value(text, "train", "flops_budget")),
        "convention": _yaml_value(text, "train", "flops_convention") or "",
        "seed": _float(_yaml_value(text, "train", "seed")),
    }


def _vocab_of(run_dir: Path) -> float:
    cfg = run_dir / RUN_CONFIG
    if not cfg.is_file():
        return float("nan")
    text = cfg.read_text(errors="replace")
    return _float(_yaml_value(text, "model", "vocab_size") or _yaml_value(text, "data", "vocab_size"))


def _empty_row(run_dir: Path) -> dict:
    row = {k: float("nan") if k in NUMERIC else "" for k in COLUMNS}
    row["run_dir"] = str(run_dir)
    return row


RESULT_COLUMNS = {"N_nonemb": "N", "tokens": "D", "val_loss": "loss"}  # result.json key -> column, all required


def _row_from_result(res: dict, run_dir: Path, convention: str | None, params: str) -> dict:
    row = _empty_row(run_dir)
    own = res.get("flops_convention") or "6N"  # the convention of its budget
    if convention is not None and convention not in CONVENTIONS:
        raise ValueError(f"convention must be '6N' or 'full', got {convention!r}")
    conv = convention or (own if own in CONVENTIONS else "6N")
    c_key = "flops_6N" if conv == "6N" else "flops_full"
    row.update(
        objective=str(res.get("objective") or ""),
        model=str(res.get("model") or ""),
        N=_float(res.get("N_nonemb" if params == "nonemb" else "N_total")),
        N_total=_float(res.get("N_total")),
        D=_float(res.get("tokens")),
        C=_float(res.get(c_key)),
        budget=_float(res.get("flops_budget")),
        loss=_float(res.get("val_loss")),
        bpb=_float(res.get("val_bpb")),
        seed=_float(res.get("seed")),
        convention=conv,
        signature=str(res.get("signature") or ""),
        status="done",
    )
    where = f"{run_dir}: result.json"
    if own not in CONVENTIONS and res.get("status") == "done":
        _mark(row, "invalid", "unknown flops_convention", f"{where} flops_convention = {own!r} is not 6N or full")
        return row
    if res.get("status") != "done":
        detail = res.get("error") or res.get("message") or ""
        _mark(
            row,
            "failed",
            f"status {res.get('status')!r}",
            f"result status {res.get('status')!r}" + (f": {detail}" if detail else ""),
        )
        return row
    if res.get("val_loss") is None:
        _mark(row, "failed", "no val_loss", "no val_loss in result.json")
        return row
    needed = {k: res.get(k) for k in ("N_nonemb", "tokens", "val_loss")}
    needed["N_total" if params == "total" else "N_nonemb"] = res.get("N_total" if params == "total" else "N_nonemb")
    needed[c_key] = res.get(c_key)
    if res.get("flops_budget") is not None:
        needed["flops_budget"] = res.get("flops_budget")
    found = first_problem(needed, loss_column="val_loss")
    if found is None:  # C in the 6N convention is 6 x non-embedding N x tokens, whatever N the fit uses
        c6 = _float(res.get("flops_6N"))
        found = compute_problem("6N", c6, _float(res.get("N_nonemb")), row["D"], ("flops_6N", "N_nonemb", "tokens"))
        if found is None and conv == "full":
            found = compute_problem(
                "full", row["C"], _float(res.get("N_nonemb")), row["D"], (c_key, "N_nonemb", "tokens")
            )
        if found is None:  # the compute it spent, in its budget's convention, belongs to its budget
            spent = _float(res.get("flops_6N" if own == "6N" else "flops_full"))
            found = budget_problem(spent, row["budget"], ("flops_6N" if own == "6N" else "flops_full", "flops_budget"))
    if found is not None:
        _mark(row, "invalid", found[0], f"{where} {found[1]}")
    return row


VALUE_KEYS = ("objective", "model", "N", "D", "C", "budget", "loss", "seed")


def _mark_duplicates(rows: list[dict], label, value_keys: tuple[str, ...] = VALUE_KEYS) -> None:
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
            _mark(row, "duplicate", f"duplicate ({what[4:]})", f"{label(row)}: {what} as {label(first)}")


def _mark_diverged(rows: list[dict], vocab: list[float], factor: float) -> None:
    """Flag non-finite losses, losses above ln(V) + 1, and losses above `factor` x the median of their peers."""
    for row, v in zip(rows, vocab, strict=True):
        if row["status"] != "done":
            continue
        loss = row["loss"]
        if not math.isfinite(loss):
            _mark(row, "diverged", "non-finite loss", f"non-finite val_loss ({loss})")
        elif math.isfinite(v) and v > 1 and loss > math.log(v) + 1:
            _mark(
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
                _mark(
                    row,
                    "diverged",
                    f"loss above {factor:g} x its budget's median",
                    f"val_loss {row['loss']:.4g} > {factor:g} x median {med:.4g} of its budget's other runs",
                )


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
    for path in sorted(root.glob(f"**/{RESULT}")):
        run_dir = path.parent
        try:
            res = json.loads(path.read_text())
            if not isinstance(res, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            row = _empty_row(run_dir)
            if (run_dir / RUN_CONFIG).is_file():
                row.update(_row_from_config(run_dir / RUN_CONFIG))
            _mark(row, "unreadable", f"{RESULT} does not parse", f"{RESULT} does not parse: {err}")
            rows.append(row)
            vocab.append(float("nan"))
            continue
        row = _row_from_result(res, run_dir, convention, params)
        if (run_dir / RUN_CONFIG).is_file():  # a failure record (sweep/job.py) holds only status and error
            for key, value in _row_from_config(run_dir / RUN_CONFIG).items():
                if row[key] == "" or (isinstance(row[key], float) and math.isnan(row[key])):
                    row[key] = value
        rows.append(row)
        vocab.append(float(vocab_size) if vocab_size else _vocab_of(run_dir))
    for cfg in sorted(root.glob(f"**/{RUN_CONFIG}")):
        if (cfg.parent / RESULT).is_file():
            continue
        row = _empty_row(cfg.parent)
        row.update(_row_from_config(cfg))
        _mark(row, "missing", f"no {RESULT}", f"no {RESULT} (not finished, still running, or lost)")
        rows.append(row)
        vocab.append(float("nan"))
    _mark_duplicates(rows, lambda r: r["run_dir"])
    _mark_diverged(rows, vocab, diverge_factor)
    table = Table(rows)
    if verbose:
        print(table.report())
    return table


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
        row = _empty_row(Path(""))
        row["run_dir"] = ""
        conv = (cell["convention"] or "").strip() or convention or "6N"
        row.update(
            objective=(cell["objective"] or "").strip() or objective or "points",
            model=(cell["model"] or "").strip() or f"row{i + 1}",
            N=_float(cell["N"]),
            D=_float(cell["D"]),
            C=_float(cell["C"]),
            loss=_float(cell["loss"]),
            seed=_float(cell["seed"]),
            convention=conv,
            signature=(cell["signature"] or "").strip(),
            status=(cell["status"] or "").strip() or "done",
        )
        budget_raw = cell["budget"]
        rows.append(row)
        if row["status"] != "done":
            row["budget"] = _float(budget_raw)
            _mark(row, row["status"], f"status {row['status']!r}", f"{where}: status {row['status']!r} in the CSV")
            continue
        names = {"N": cols["N"], "D": cols["D"], "C": cols["C"], "loss": cols["loss"], "budget": cols["budget"]}
        needed: dict[str, object] = {names["loss"]: cell["loss"]}
        if conv not in CONVENTIONS:
            _mark(
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
            _mark(row, "invalid", found[0], f"{where}: {found[1]}")
            row["budget"] = _float(budget_raw)
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
                _mark(row, "invalid", found[0], f"{where}: {found[1]}")
        row["budget"] = _float(budget_raw) if cols["budget"] else row["C"]
        found = budget_problem(row["C"], row["budget"], (names["C"] or "C", names["budget"] or "budget"))
        if found is not None and row["status"] == "done":
            _mark(row, "invalid", found[0], f"{where}: {found[1]}")
    notes = [
        f"{what} in {count} row(s) that give none"
        for what, count in (("C derived as 6 N D", derived["C"]), ("D derived as C / (6 N)", derived["D"]))
        if count
    ]
    position = {id(r): i + 1 for i, r in enumerate(rows)}
    keys = tuple(k for k in VALUE_KEYS if k != "model" or cols["model"])  # generated names (row7) never repeat
    _mark_duplicates(rows, lambda r: f"row {position[id(r)]}", keys)
    _mark_diverged(rows, [float("nan")] * len(rows), diverge_factor)
    return Table(rows, notes)
