"""The measured cost of WSD against cosine: final validation loss of WSD branches (off shared trunks) against
independent cosine runs at the same (N, D), paired by seed, per objective.

    python experiments/wsd-vs-cosine/analyze.py [SWEEP_DIR]     # default: runs/experiments/wsd-vs-cosine

Prints a markdown table per (objective, width, steps): each schedule's mean final loss over seeds, the mean
paired difference WSD - cosine with its seed-to-seed standard deviation, and the seed-to-seed standard deviation
of the cosine loss itself; then per objective the mean difference over every cell with a 95% t interval
(Student t over the paired differences), and the compute the shared trunks saved. Writes the same to
`results.md` and the per-run rows to `results.csv` next to this script (atomically).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from scipy import stats

from llada_lightning.io import atomic_write_text

HERE = Path(__file__).resolve().parent


def load(sweep_dir: Path) -> list[dict]:
    """One row per finished run of the sweep (trunks, in `.trunks/`, are not runs)."""
    rows = []
    for result in sorted(sweep_dir.glob("*/result.json")):
        res = json.loads(result.read_text())
        if res.get("status") != "done":
            continue
        cfg = OmegaConf.load(result.parent / "config.yaml")
        rows.append(
            {
                "objective": res["objective"],
                "width": int(cfg.model.d_model),
                "N": int(res["N_nonemb"]),
                "steps": int(res["steps"]),
                "tokens": int(res["tokens"]),
                "D": int(res["steps"]) * int(cfg.train.batch_size) * int(cfg.data.seq_len),  # at full length
                "seed": int(cfg.train.seed),
                "schedule": str(cfg.train.lr_schedule),
                "lr": float(cfg.train.lr),
                "val_loss": float(res["val_loss"]),
                "flops_6N": float(res["flops_6N"]),
                "flops_spent": float(res.get("flops_spent", res["flops_6N"])),
                "flops_independent": float(res.get("flops_independent", res["flops_6N"])),
            }
        )
    return rows


def _sd(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _interval(d: list[float]) -> tuple[float, float, float]:
    """Mean of paired differences and its 95% Student t interval."""
    a = np.array(d)
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else math.nan
    return float(a.mean()), float(a.mean()) - half, float(a.mean()) + half


def report(rows: list[dict]) -> str:
    out = io.StringIO()
    # (objective, width, N, steps, D) -> lr -> schedule -> seed -> loss
    cells: dict[tuple, dict[float, dict[str, dict[int, float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict))
    )
    for r in rows:
        key = (r["objective"], r["width"], r["N"], r["steps"], r["D"])
        cells[key][r["lr"]][r["schedule"]][r["seed"]] = r["val_loss"]
    print(
        "| objective | width | N | steps | D/N | peak LR | cosine | WSD | WSD - cosine (sd) | cosine seed sd |",
        file=out,
    )
    print("|---|---|---|---|---|---|---|---|---|---|", file=out)
    same_lr: dict[tuple[str, float], list[float]] = defaultdict(list)
    best: dict[str, list[float]] = defaultdict(list)
    spreads: dict[str, list[float]] = defaultdict(list)
    best_lr: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (objective, width, n, steps, tokens), by_lr in sorted(cells.items()):
        for lr, by in sorted(by_lr.items()):
            seeds = sorted(set(by["cosine"]) & set(by["wsd"]))
            if not seeds:
                continue
            d = [by["wsd"][s] - by["cosine"][s] for s in seeds]
            cos = [by["cosine"][s] for s in seeds]
            same_lr[(objective, lr)] += d
            spreads[objective].append(_sd(cos))
            print(
                f"| {objective} | {width} | {n:,} | {steps} | {tokens / n:.0f} | {lr:g} | {np.mean(cos):.4f} | "
                f"{np.mean([by['wsd'][s] for s in seeds]):.4f} | {np.mean(d):+.4f} ({_sd(d):.4f}) | "
                f"{_sd(cos):.4f} |",
                file=out,
            )
        # each schedule at its own better peak LR (lowest mean over seeds), paired by seed
        pick = {}
        for schedule in ("cosine", "wsd"):
            options = {lr: by[schedule] for lr, by in by_lr.items() if by[schedule]}
            if options:
                pick[schedule] = min(options, key=lambda lr, o=options: float(np.mean(list(o[lr].values()))))
                best_lr[objective][schedule].append(pick[schedule])
        if len(pick) == 2:
            c, w = by_lr[pick["cosine"]]["cosine"], by_lr[pick["wsd"]]["wsd"]
            best[objective] += [w[s] - c[s] for s in sorted(set(c) & set(w))]
    print(file=out)
    for objective in sorted(spreads):
        wsd = [r for r in rows if r["objective"] == objective and r["schedule"] == "wsd"]
        cost = sum(r["flops_spent"] for r in wsd) / sum(r["flops_independent"] for r in wsd)
        parts = []
        for (obj, lr), d in sorted(same_lr.items()):
            if obj == objective:
                m, lo, hi = _interval(d)
                parts.append(f"at peak LR {lr:g}: {m:+.4f} [{lo:+.4f}, {hi:+.4f}] ({len(d)} pairs)")
        line = f"- **{objective}**, WSD - cosine in nats (mean, 95% t interval): " + "; ".join(parts)
        if best[objective]:
            m, lo, hi = _interval(best[objective])
            chosen = {k: sorted(set(v)) for k, v in best_lr[objective].items()}
            line += f"; each at its better LR ({chosen}): {m:+.4f} [{lo:+.4f}, {hi:+.4f}]"
        line += (
            f". Seed-to-seed sd of a cosine run's loss {np.nanmean(spreads[objective]):.4f} (mean over cells); "
            f"the shared trunks cost {cost:.0%} of independent WSD runs' compute."
        )
        print(line, file=out)
    return out.getvalue()


def main(argv: list[str]) -> int:
    sweep_dir = Path(argv[0]) if argv else Path("runs/experiments/wsd-vs-cosine")
    rows = load(sweep_dir)
    if not rows:
        print(f"no finished runs under {sweep_dir}; run experiments/wsd-vs-cosine/run.sh first", file=sys.stderr)
        return 1
    text = report(rows)
    print(text, end="")
    atomic_write_text(HERE / "results.md", text)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(HERE / "results.csv", buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
