"""The `data-constrained` design: its runs (nested unique-token budgets, epochs, single-epoch twins, shared trunks),
its one-line errors, and its quick study end to end with a failed run handled."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llada_lightning.config.errors import ConfigError
from llada_lightning.flops import tokens_per_step
from llada_lightning.study.design import load_design
from llada_lightning.study.study import Study
from llada_lightning.sweep.trunks import plan_trunks


def quick():
    design = load_design("data-constrained", quick=True)
    windows, _ = design.place({}, {})
    return design, Study(design, Path("/nonexistent")).expand(windows)


def test_runs_repeat_each_unique_budget_for_every_epoch_count_and_add_fresh_twins():
    design, runs = quick()
    per_step = tokens_per_step(runs[0].cfg)
    seen: dict[tuple, set] = {}
    for r in runs:
        u, d = r.cfg.data.unique_tokens, r.tokens
        assert r.cfg.train.flops_budget is None and d == r.cfg.train.max_steps * per_step
        seen.setdefault((r.cfg.objective.name, r.cfg.model.d_model), set()).add((u, d))
    expected = {(u, e * u) for u in (2048, 8192) for e in (1, 4, 16)}
    expected |= {(None, d) for d in (4 * 2048, 16 * 2048, 4 * 8192, 16 * 8192)}  # fresh data, read once
    assert all(v == expected for v in seen.values())  # both objectives and every size: the same (U, D) grid
    assert set(seen) == {(o, w) for o in ("llada", "arm") for w in (16, 24)}
    # the runs of one (objective, size, U) differ only in length: with WSD they share one trunk
    trunks = plan_trunks(runs, Path("/nonexistent/quick"), singletons=True)
    assert len(trunks) == 2 * 2 * 3  # objectives x sizes x (2 budgets U + fresh)
    # ... except a run shorter than the fixed warmup (U = 2048 for one epoch: 8 steps < 10), which trains alone
    assert sorted(len(t.branches) for t in trunks) == [2] * 4 + [3] * 8
    shared = {b.run.signature for t in trunks for b in t.branches}
    alone = [r for r in runs if r.signature not in shared]
    assert len(alone) == 4 and all(r.steps < r.cfg.train.warmup_min_steps for r in alone)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["epochs=[2, 4]"], "must include 1"),
        (["epochs=[1, 1, 4]"], "distinct integers"),
        (["unique_tokens=[1000]"], "not a whole number of steps"),
        (["unique_tokens=[0]"], "distinct positive token counts"),
        (["widths=[32, 16]"], "increasing"),
        (["fresh=maybe"], "fresh='maybe'"),
    ],
)
def test_bad_parameters_are_one_line_naming_them(sets, message):
    with pytest.raises(ConfigError, match=message):
        load_design("data-constrained", quick=True, sets=sets)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_data_constrained_study_end_to_end_and_with_a_failed_run(tmp_path):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "LLADA_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "llada_lightning.cli", "study", "data-constrained", "--quick", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    directory = tmp_path / "data-constrained-quick"
    with (directory / "points.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 36
    for row in rows:  # every run records its unique tokens and epochs, and epochs = blocks read / unique blocks
        u, d, e = float(row["U"]), float(row["D"]), float(row["epochs"])
        if row["objective"] == "arm":
            assert e == d / u
        else:  # D counts the tokens trained on: LLaDA's 1% of steps at a random length read whole blocks
            assert 0.98 * e <= d / u <= e
        assert u in (2048, 8192) or u > 1e6  # a budget, or the whole training split for the fresh runs
    fit = json.loads((directory / "fit.json").read_text())
    for name in ("llada", "arm"):
        sec = fit["objectives"][name]
        assert sec["n_points"] == 18 and "R_D_star" in sec and "interval" in sec, sec.get("error")
        assert sec["half_life"] == pytest.approx(sec["R_D_star"] * 0.6931471805599453) if sec["R_D_star"] else True
    assert set(fit["critical_compute"]) == {"2048", "8192"}
    assert "verdict" in fit["direction"]
    for stem in ("epochs", "repetition"):
        for suffix in ("png", "pdf", "csv"):
            assert (directory / "plots" / f"{stem}.{suffix}").stat().st_size > 0, (stem, suffix)
    summary = (directory / "summary.txt").read_text()
    assert "R_D* =" in summary and "Critical compute" in summary and "Direction:" in summary

    # a relaunch trains nothing; a failed run is left out of the fit and counted
    proc = subprocess.run([*cmd, "--bootstrap", "0"], capture_output=True, text=True, env=env, timeout=200)
    assert proc.returncode == 0 and "submitted 0 (local)" in proc.stdout, proc.stdout[-2000:]
    result = next(directory.glob("*/result.json"))
    rec = json.loads(result.read_text())
    result.write_text(json.dumps({**rec, "status": "failed", "error": "killed"}))
    proc = subprocess.run([*cmd, "--report", "--bootstrap", "0"], capture_output=True, text=True, env=env, timeout=200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fit = json.loads((directory / "fit.json").read_text())
    assert sum(s["n_points"] for s in fit["objectives"].values()) == 35
