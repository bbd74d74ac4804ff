"""The points of a scaling study: every run of a sweep (`**/result.json`), or an external CSV of published points.

Nothing is dropped silently. Each row has a `status`:
- `done`: usable in fits;
- `failed`: result.json says so, or it has no validation loss;
- `diverged`: non-finite loss, loss above ln(vocab) + 1 (worse than a uniform guess by a nat), or above
  `diverge_factor` x the median of the other runs of its objective and budget;
- `missing`: a run directory (it has `config.yaml`) without a result.json (unfinished, running or lost);
- `unreadable`: a result.json that does not parse.
and a `reason`. Fits use `Table.usable()`; `Table.report()` lists the rest.

Columns: N is the non-embedding parameter count by default (Kaplan, SMDM), D the training tokens, C the training
FLOPs in the named convention (SPEC 5: "6N" or "full"), budget the FLOP budget the run was launched with (the
IsoFLOP grouping key; NaN for runs launched by step count).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llada_lightning.io import atomic_write_text

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
}


@dataclass
class Table:
    """Rows of a study (dicts keyed by COLUMNS); `column()` gives numpy arrays."""

    rows: list[dict]

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
            ]
        )

    def usable(self) -> Table:
        return self.select(status="done")

    def objectives(self) -> list[str]:
        return sorted({r["objective"] for r in self.rows if r["objective"]})

    def excluded(self) -> list[dict]:
        """The rows left out of fits, with why."""
        keys = ("objective", "model", "status", "reason", "loss", "budget", "run_dir")
        return [{k: r.get(k) for k in keys} for r in self.rows if r["status"] != "done"]

    def status_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    def report(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(self.status_counts().items()))
        lines = [f"{len(self)} runs: {counts or 'none'}"]
        for r in self.excluded():
            where = r["run_dir"] or r["model"] or "?"
            lines.append(f"  excluded [{r['status']}] {r['objective'] or '?'} {where}: {r['reason']}")
        return "\n".join(lines)


def _float(v) -> float:
    if v is None or v == "":
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


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


def _row_from_result(res: dict, run_dir: Path, convention: str | None, params: str) -> dict:
    row = _empty_row(run_dir)
    conv = convention or res.get("flops_convention") or "6N"
    if conv not in ("6N", "full"):
        raise ValueError(f"convention must be '6N' or 'full', got {conv!r}")
    row.update(
        objective=str(res.get("objective") or ""),
        model=str(res.get("model") or ""),
        N=_float(res.get("N_nonemb" if params == "nonemb" else "N_total")),
        N_total=_float(res.get("N_total")),
        D=_float(res.get("tokens")),
        C=_float(res.get("flops_6N" if conv == "6N" else "flops_full")),
        budget=_float(res.get("flops_budget")),
        loss=_float(res.get("val_loss")),
        bpb=_float(res.get("val_bpb")),
        seed=_float(res.get("seed")),
        convention=conv,
        signature=str(res.get("signature") or ""),
        status="done",
    )
    if res.get("status") != "done":
        row["status"] = "failed"
        detail = res.get("error") or res.get("message") or ""
        row["reason"] = f"result status {res.get('status')!r}" + (f": {detail}" if detail else "")
    elif res.get("val_loss") is None:
        row["status"], row["reason"] = "failed", "no val_loss in result.json"
    return row


def _mark_diverged(rows: list[dict], vocab: list[float], factor: float) -> None:
    """Flag non-finite losses, losses above ln(V) + 1, and losses above `factor` x the median of their peers."""
    for row, v in zip(rows, vocab, strict=True):
        if row["status"] != "done":
            continue
        loss = row["loss"]
        if not math.isfinite(loss):
            row["status"], row["reason"] = "diverged", f"non-finite val_loss ({loss})"
        elif math.isfinite(v) and v > 1 and loss > math.log(v) + 1:
            row["status"] = "diverged"
            row["reason"] = f"val_loss {loss:.4g} > ln(vocab {int(v)}) + 1 = {math.log(v) + 1:.4g}"
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
                row["status"] = "diverged"
                row["reason"] = f"val_loss {row['loss']:.4g} > {factor:g} x median {med:.4g} of its budget's other runs"


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
            row["status"], row["reason"] = "unreadable", f"{RESULT} does not parse: {err}"
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
        row["status"], row["reason"] = "missing", f"no {RESULT} (not finished, still running, or lost)"
        rows.append(row)
        vocab.append(float("nan"))
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
    diverge_factor: float = DIVERGE_FACTOR,
) -> Table:
    """Points from a CSV: loss plus N (or n_params), D (or tokens) and/or C (or compute, flops); optional objective.

    Missing C is 6 N D and missing D is C / (6N) (the 6N convention, as Chinchilla's published points);
    without a budget column, budget is C, so points of one IsoFLOP profile group together (within 2%).
    `objective` fills rows that have none (default "points"). Rows are diagnosed like runs (non-finite or
    outlying losses are `diverged`).
    """
    text = Path(csv_path).read_text()
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise ValueError(f"{csv_path}: empty CSV")
    lower = {f.strip().lower(): f for f in reader.fieldnames}

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
    for i, rec in enumerate(reader):
        row = _empty_row(Path(""))
        row["run_dir"] = ""
        n = _float(rec[cols["N"]]) if cols["N"] else float("nan")
        d = _float(rec[cols["D"]]) if cols["D"] else float("nan")
        c = _float(rec[cols["C"]]) if cols["C"] else float("nan")
        if not math.isfinite(c):
            c = 6.0 * n * d
        if not math.isfinite(d):
            d = c / (6.0 * n)
        budget = _float(rec[cols["budget"]]) if cols["budget"] else float("nan")
        row.update(
            objective=(rec[cols["objective"]].strip() if cols["objective"] else "") or objective or "points",
            model=rec[cols["model"]].strip() if cols["model"] else f"row{i + 1}",
            N=n,
            D=d,
            C=c,
            budget=budget if cols["budget"] else c,
            loss=_float(rec[cols["loss"]]),
            convention="6N",
            status=(rec[cols["status"]].strip() if cols["status"] else "") or "done",
        )
        if row["status"] != "done":
            row["reason"] = f"status {row['status']!r} in the CSV"
        rows.append(row)
    _mark_diverged(rows, [float("nan")] * len(rows), diverge_factor)
    return Table(rows)
