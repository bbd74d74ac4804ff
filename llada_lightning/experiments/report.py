"""The reversal experiment's outputs: the table (stdout, summary.txt), reversal.csv, reversal.json, the figure.

Every number is computed from the runs' stored answers; the papers' numbers are quoted with their source.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from llada_lightning.experiments.intervals import t_interval, wilson_interval
from llada_lightning.experiments.scoring import ANSWER_KINDS, QUERIES, answer_kinds
from llada_lightning.io import atomic_write_json, atomic_write_text

LABELS = {"llada": "LLaDA", "arm": "ARM"}
# Nie et al. 2025 (arXiv 2502.09992), Sec. 3.3, Table 4 "Comparison on the Poem Completion task" (496 Chinese poem
# line pairs; forward = next line, reversal = previous line; zero-shot, no CFG), accuracy in %.
LLADA_TABLE = (
    ("GPT-4o (2024-08-06)", 82.7, 34.3),
    ("Qwen2.5-7B Instruct", 75.9, 38.0),
    ("LLaDA-8B Instruct", 51.8, 45.6),
)
SMDM_NOTE = (
    "SMDM (Nie et al. 2024, arXiv 2410.18514), Sec. 7.1 Table 5 (Berglund et al.'s name/description data, fine-tuned "
    "10 epochs, greedy, exact match; MDM with CFG 0.8): the table's cells were not in the text we could read; its "
    "prose says GPT-3, Llama-2 and T5 reach zero accuracy on reverse queries while the 1.1B MDM scores substantially "
    "higher and performs similarly to ARMs in the same direction"
)
METRICS = {"exact": "generation, exact match", "rank": "likelihood rank 1 of n"}
CSV_COLUMNS = (
    "metric", "objective", "subset", "direction", "mean", "t_lo", "t_hi", "wilson_lo", "wilson_hi",
    "correct", "n", "seeds", "per_seed", "contains_mean",
)  # fmt: skip


def _row(metric: str, objective: str, key: str, mine: list[dict[str, Any]], cells: list[dict[str, Any]]) -> dict:
    """Per-seed values, the t interval over seeds and the pooled Wilson interval of one (metric, cell)."""
    subset, direction = key.split("/")
    per_seed = [float(c["exact" if metric == "exact" else "rank_acc"]) for c in cells]
    correct, n = sum(int(c["correct"]) for c in cells), sum(int(c["n"]) for c in cells)
    return {
        "metric": metric,
        "objective": objective,
        "subset": subset,
        "direction": direction,
        "seeds": [int(r["seed"]) for r in mine],
        "per_seed": per_seed,
        "t": t_interval(per_seed).as_dict(),  # Student-t over seeds
        "wilson": wilson_interval(correct, n).as_dict(),  # pooled (seed, fact) outcomes
        "correct": correct,
        "n": n,
        "contains_mean": sum(float(c["contains"]) for c in cells) / len(cells) if metric == "exact" else None,
        "chance": cells[0].get("chance"),
        "mean_rank": [float(c["mean_rank"]) for c in cells] if metric == "rank" else None,
        "mean_rank_t": _rank_interval(cells) if metric == "rank" else None,
    }


def _rank_interval(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """The t interval over seeds of the true answer's mean rank (1 = always best; chance (n + 1) / 2)."""
    n_candidates = round(1 / float(cells[0]["chance"]))
    return t_interval([float(c["mean_rank"]) for c in cells], bounds=(1.0, float(n_candidates))).as_dict()


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (metric, objective, subset, direction): generation exact match for every query of QUERIES, and
    the likelihood rank accuracy on the forward-only pairs."""
    rows = []
    for metric in METRICS:
        for objective in dict.fromkeys(r["objective"] for r in runs):
            mine = sorted((r for r in runs if r["objective"] == objective), key=lambda r: r["seed"])
            keys = [f"{s}/{d}" for s, d in QUERIES] if metric == "exact" else ["test/forward", "test/reverse"]
            for key in keys:
                source = "accuracy" if metric == "exact" else "ranking"
                rows.append(_row(metric, objective, key, mine, [r[source][key] for r in mine]))
    return rows


def _find(rows: list[dict[str, Any]], objective: str, subset: str, direction: str, metric: str = "exact") -> dict:
    key = (metric, objective, subset, direction)
    return next(r for r in rows if (r["metric"], r["objective"], r["subset"], r["direction"]) == key)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _interval(d: dict[str, Any]) -> str:
    return "[n/a: 1 seed]" if d["lo"] is None else f"[{_pct(d['lo'])}, {_pct(d['hi'])}]"


def table(rows: list[dict[str, Any]]) -> str:
    """The table of every row, accuracies in %: generation exact match first, then the likelihood ranking."""
    head = (
        f"{'metric':<8} {'objective':<9} {'pairs':<9} {'direction':<9} {'acc %':>6}  {'95% t, seeds':<14}  "
        f"{'per seed':<18} {'pooled k/n':>10}  {'Wilson 95%':<13} {'contains %':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        per_seed = " ".join(_pct(v) for v in r["per_seed"])
        subset = "fwd-only" if r["subset"] == "test" else "both-ways"
        metric = "gen" if r["metric"] == "exact" else "lik-rank"
        lines.append(
            f"{metric:<8} {LABELS.get(r['objective'], r['objective']):<9} {subset:<9} {r['direction']:<9} "
            f"{_pct(r['t']['mean']):>6}  {_interval(r['t']):<14}  {per_seed:<18} "
            f"{str(r['correct']) + '/' + str(r['n']):>10}  {_interval(r['wilson']):<13} {_pct(r['contains_mean']):>10}"
        )
    return "\n".join(lines)


def _separated(a: dict[str, Any], b: dict[str, Any]) -> str:
    """How interval a sits against b: 'above', 'below', 'identical' or 'overlapping'."""
    if a["lo"] is None or b["lo"] is None:
        return "unresolved (one seed)"
    if (a["lo"], a["hi"]) == (b["lo"], b["hi"]):
        return "identical"
    if a["lo"] > b["hi"]:
        return "above"
    if a["hi"] < b["lo"]:
        return "below"
    return "overlapping"


def comparison(rows: list[dict[str, Any]]) -> list[str]:
    """The measured forward/reverse accuracies next to LLaDA's Table 4, in words computed from the numbers."""
    lines = ["Papers (accuracy %, forward / reversal):"]
    for name, fwd, rev in LLADA_TABLE:
        lines.append(f"  {name:<22} {fwd:5.1f} / {rev:5.1f}  (reversal keeps {100 * rev / fwd:.0f}% of forward)")
    lines.append("  source: Nie et al. 2025, arXiv 2502.09992, Sec. 3.3, Table 4 (reversal poem completion)")
    lines.append(f"  {SMDM_NOTE}.")
    lines.append("Measured here (forward-only pairs, exact match %, mean over seeds):")
    for objective in ("arm", "llada"):
        if not any(r["objective"] == objective for r in rows):
            continue
        fwd = _find(rows, objective, "test", "forward")["t"]
        rev = _find(rows, objective, "test", "reverse")["t"]
        keeps = f"reversal keeps {100 * rev['mean'] / fwd['mean']:.0f}% of forward" if fwd["mean"] > 0 else "no ratio"
        ranks = _find(rows, objective, "test", "reverse", "rank")
        mr, n = ranks["mean_rank_t"], round(1 / ranks["chance"])
        where = "" if mr["lo"] is None else f" [{mr['lo']:.1f}, {mr['hi']:.1f}]"
        lines.append(
            f"  {LABELS[objective]:<22} {_pct(fwd['mean']):>5} / {_pct(rev['mean']):>5}  ({keeps}); likelihood, "
            f"reverse: the true A is rank 1 in {_pct(ranks['t']['mean'])}%, mean rank {mr['mean']:.1f}{where} of "
            f"{n} (chance {_pct(ranks['chance'])}%, {(n + 1) / 2:.1f})"
        )
    return lines


def wrong_answers(runs: list[dict[str, Any]]) -> list[str]:
    """What each objective answers to the reverse questions of the forward-only pairs, pooled over seeds."""
    lines = ["Answers to the reverse questions (forward-only pairs, pooled over seeds):"]
    for objective in dict.fromkeys(r["objective"] for r in runs):
        total = dict.fromkeys(ANSWER_KINDS, 0)
        for r in runs:
            if r["objective"] == objective:
                for kind, count in answer_kinds(r["records"]).items():
                    total[kind] += count
        lines.append(f"  {LABELS.get(objective, objective):<6} " + ", ".join(f"{k} {v}" for k, v in total.items()))
    return lines


def _verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """Where LLaDA's intervals sit against the ARM's, in words computed from the intervals."""
    lines: list[str] = []
    if all(any(r["objective"] == o for r in rows) for o in ("arm", "llada")):
        lr, ar = _find(rows, "llada", "test", "reverse"), _find(rows, "arm", "test", "reverse")
        lf, af = _find(rows, "llada", "test", "forward"), _find(rows, "arm", "test", "forward")
        lines.append(
            f"  generation, LLaDA's 95% t interval against the ARM's: reverse {_separated(lr['t'], ar['t'])}, forward "
            f"{_separated(lf['t'], af['t'])}; pooled Wilson, reverse: LLaDA {_interval(lr['wilson'])}, "
            f"ARM {_interval(ar['wilson'])}"
        )
        lk, ak = (_find(rows, o, "test", "reverse", "rank") for o in ("llada", "arm"))
        lines.append(
            f"  likelihood, reverse, LLaDA's interval against the ARM's: rank-1 rate {_separated(lk['t'], ak['t'])} "
            f"(Wilson: {_separated(lk['wilson'], ak['wilson'])}), mean rank "
            f"{_separated(lk['mean_rank_t'], ak['mean_rank_t'])} (lower is better)"
        )
    return lines


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        t, w = r["t"], r["wilson"]
        writer.writerow(
            [r["metric"], r["objective"], r["subset"], r["direction"], f"{t['mean']:.6g}",
             "" if t["lo"] is None else f"{t['lo']:.6g}", "" if t["hi"] is None else f"{t['hi']:.6g}",
             f"{w['lo']:.6g}", f"{w['hi']:.6g}", r["correct"], r["n"],
             ";".join(map(str, r["seeds"])), ";".join(f"{v:.6g}" for v in r["per_seed"]),
             "" if r["contains_mean"] is None else f"{r['contains_mean']:.6g}"]
        )  # fmt: skip
    atomic_write_text(path, buf.getvalue())


def _panel(ax, rows: list[dict[str, Any]], metric: str, subset: str) -> None:
    """Bars = mean over seeds, whiskers = 95% t interval, dots = seeds; forward and reverse side by side."""
    from llada_lightning.scaling.plots import COLORS

    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    width = 0.8 / len(objectives)
    for k, objective in enumerate(objectives):
        for x, direction in enumerate(("forward", "reverse")):
            r = _find(rows, objective, subset, direction, metric)
            t, pos = r["t"], x + (k - (len(objectives) - 1) / 2) * width
            label = LABELS.get(objective, objective) if x == 0 else None
            ax.bar(pos, 100 * t["mean"], width * 0.9, color=COLORS.get(objective), alpha=0.75, label=label)
            if t["lo"] is not None:
                yerr = [[100 * (t["mean"] - t["lo"])], [100 * (t["hi"] - t["mean"])]]
                ax.errorbar(pos, 100 * t["mean"], yerr=yerr, color="black", capsize=4)
            ax.scatter([pos] * len(r["per_seed"]), [100 * v for v in r["per_seed"]], color="black", s=10, zorder=3)
    if metric == "rank":
        chance = 100 * _find(rows, objectives[0], subset, "forward", metric)["chance"]
        ax.axhline(chance, color="gray", linestyle=":", linewidth=1, label=f"chance ({chance:.1f}%)")
    ax.set_xticks([0, 1], ["forward (A -> B)", "reverse (B -> A)"])
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)


def plot(stem: Path, rows: list[dict[str, Any]]) -> list[Path]:
    """Three panels: generation exact match on the forward-only and on the both-way pairs, and the likelihood
    rank-1 accuracy on the forward-only pairs."""
    from llada_lightning.scaling.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    panels = (
        ("exact", "test", "generation: forward-only pairs"),
        ("exact", "both", "generation: both-way pairs (seen both ways)"),
        ("rank", "test", "likelihood rank 1: forward-only pairs"),
    )
    for ax, (metric, subset, title) in zip(axes, panels, strict=True):
        _panel(ax, rows, metric, subset)
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("accuracy [%]")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[2].legend(loc="upper right", fontsize=8)
    fig.suptitle("Reversal curse at matched compute (bars: mean; whiskers: 95% t over seeds; dots: seeds)", fontsize=9)
    paths = save_figure(fig, stem, ("png", "pdf"))
    plt.close(fig)
    return paths


def write_outputs(out: Path, *, preset: dict[str, Any], runs: list[dict[str, Any]], timing: dict) -> dict[str, Any]:
    """Write reversal.csv, reversal.json, summary.txt and the figure under `out`; print the summary."""
    rows = aggregate(runs)
    figures = [str(p) for p in plot(out / "reversal", rows)]
    compute = {
        f"{r['objective']}/seed{r['seed']}": {
            k: r["result"].get(k) for k in ("steps", "tokens", "flops_6N", "N_nonemb")
        }
        for r in runs
    }
    lines = [
        f"reversal curse ({preset['name']}): {preset['n_test']} forward-only + {preset['n_both']} both-way pairs per "
        f"seed, {len(runs) // 2} seed(s); exact match of the entity, greedy",
        table(rows),
        "gen: greedy generation, exact match of the entity; lik-rank: the true answer has the highest log-likelihood "
        f"of the {preset['n_test']} forward-only answers (chance {100 / preset['n_test']:.1f}%; ARM exact, LLaDA a "
        "Monte Carlo bound). t: Student-t 95% over seeds (clipped to [0, 100]); Wilson: 95% score interval of the "
        "pooled (seed, fact) outcomes; contains: SMDM's looser metric (the reference is a substring of the answer).",
        *comparison(rows),
        *_verdicts(rows),
        *wrong_answers(runs),
        "compute per run (6N FLOPs, from result.json): "
        + ", ".join(f"{k} {v['flops_6N']:.3g}" for k, v in compute.items() if v.get("flops_6N") is not None),
        f"wall time: {timing['total_s']:.0f} s ({timing['parallel']} run(s) at once x {timing['threads']} torch "
        "thread(s); per run train + eval s: "
        + ", ".join(
            f"{r['objective']}/seed{r['seed']} {r['timing_s']['train_s']:.0f}+{r['timing_s']['eval_s']:.0f}"
            for r in runs
        )
        + ")",
    ]
    summary = "\n".join(lines)
    record = {
        "preset": preset,
        "rows": rows,
        "timing_s": timing,
        "compute": compute,
        "papers": {
            "llada_table4": [{"model": m, "forward": f, "reversal": r} for m, f, r in LLADA_TABLE],
            "smdm_table5": SMDM_NOTE,
        },
        "summary": summary,
        "figures": figures,
        "runs": runs,
    }
    write_csv(out / "reversal.csv", rows)
    atomic_write_json(out / "reversal.json", record)
    atomic_write_text(out / "summary.txt", summary + "\n")
    print(summary)
    return record
