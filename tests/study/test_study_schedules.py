"""The `schedules` design: variants that differ only where they should, and its quick study end to end (training,
multipliers, estimator variances, plots, summary) with missing, failed and diverged runs handled."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llada_lightning.config.signature import config_diff
from llada_lightning.objectives.registry import build_objective
from llada_lightning.study.design import load_design
from llada_lightning.study.schedules import VARIANTS, variant_of
from llada_lightning.study.study import Study

# what each variant changes from LLaDA's recipe (the linear schedule, ELBO weight, i.i.d. times)
CHANGES = {
    "linear": set(),
    "cosine": {"objective.schedule"},
    "poly2": {"objective.schedule"},
    "unweighted": {"objective.weighting"},
    "antithetic": {"objective.time_sampling"},
    "arm": {"objective.name", "model.causal"},
}


def quick_runs():
    design = load_design("schedules", quick=True)
    windows, _ = design.place({}, {})
    return design, Study(design, Path("/nonexistent")).expand(windows)


def test_variants_differ_from_the_linear_recipe_only_in_their_own_keys():
    design, runs = quick_runs()
    assert {variant_of(r.cfg) for r in runs} == set(VARIANTS)
    cells: dict[tuple, dict[str, object]] = {}
    for r in runs:
        cells.setdefault((r.cfg.train.flops_budget, r.cfg.model.d_model, r.cfg.train.seed), {})[variant_of(r.cfg)] = r
    assert len(cells) == len(design.budgets) * len(design.widths) and all(
        len(c) == len(VARIANTS) for c in cells.values()
    )
    for cell in cells.values():
        ref = cell["linear"].cfg
        for name, run in cell.items():
            changed = {d.split(" ", 1)[0] for d in config_diff(run.cfg, ref)}
            assert changed == CHANGES[name], name  # same data, model, optimiser, budget and seed: one change
            assert run.cfg.data == ref.data and run.cfg.train == ref.train  # hence the same token stream


def test_variants_draw_the_same_mask_stream_given_the_time():
    design, runs = quick_runs()
    by_variant = {variant_of(r.cfg): r.cfg for r in runs}
    mask_id = 1023
    x0 = torch.randint(0, 1000, (8, 32), generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0.05, 0.95, 8)

    def masks(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        objective = build_objective(by_variant[name].objective, mask_id)
        _, masked, p = objective._mask(x0, t, torch.Generator().manual_seed(7))
        return masked, p

    linear, p_lin = masks("linear")
    for name in ("unweighted", "antithetic"):  # the same schedule: the same masks at the same times
        same, _ = masks(name)
        assert torch.equal(same, linear), name
    for name in ("cosine", "poly2"):  # another mask probability, thresholding the same uniform draws
        other, p = masks(name)
        assert not torch.equal(other, linear)
        for b in range(len(t)):
            lo, hi = (other[b], linear[b]) if p[b] <= p_lin[b] else (linear[b], other[b])
            assert torch.all(hi | ~lo), (name, b)  # nested: masked at the lower probability => at the higher
    gen_iid, gen_anti = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    t_iid = build_objective(by_variant["linear"].objective, mask_id)
    from llada_lightning.objectives.llada import sample_times

    assert t_iid.cfg.time_sampling == "iid"
    iid = sample_times(8, generator=gen_iid, antithetic=False)
    anti = sample_times(8, generator=gen_anti, antithetic=True)
    gaps = torch.sort(anti).values.diff()
    assert torch.allclose(gaps, torch.full_like(gaps, 1 / 8), atol=1e-6) and not torch.allclose(iid, anti)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_quick_schedules_study_end_to_end_and_with_partial_runs(tmp_path):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "LLADA_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "llada_lightning.cli", "study", "schedules", "--quick", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    directory = tmp_path / "schedules-quick"
    fit = json.loads((directory / "fit.json").read_text())
    llada_variants = [v for v in VARIANTS if v != "arm"]
    assert fit["variants"] == list(VARIANTS)
    assert set(fit["vs_linear"]) == set(llada_variants) - {"linear"} and set(fit["vs_arm"]) == set(llada_variants)
    for comp in [*fit["vs_linear"].values(), *fit["vs_arm"].values()]:
        assert comp["compute"] == [1e9, 4e9] and len(comp["k"]) == 2 and len(comp["interval"]["k"]) == 2
    paired = fit["paired_vs_linear"]
    assert set(paired) == set(llada_variants) - {"linear"}
    assert all([r["C"] for r in rows] == [1e9, 4e9] and all(r["pairs"] == 3 for r in rows) for rows in paired.values())
    var = fit["variance"]
    assert set(var["own_checkpoint"]) == set(var["at_common_checkpoint"]) == set(llada_variants)
    for rec in var["at_common_checkpoint"].values():
        assert rec["loss_var"] > 0 and rec["grad_var"] > 0 and rec["draws"] == 16
    # one checkpoint, one estimator: the linear variant's own record is its record at the common checkpoint
    assert var["own_checkpoint"]["linear"]["loss_var"] == var["at_common_checkpoint"]["linear"]["loss_var"]
    assert set(fit["variance_verdicts"]) == set(llada_variants) - {"linear"}
    for stem in ("isoflop", "frontier", "multipliers", "variance"):
        for suffix in ("png", "pdf", "csv"):
            assert (directory / "plots" / f"{stem}.{suffix}").stat().st_size > 0, (stem, suffix)
    summary = (directory / "summary.txt").read_text()
    assert "Compute multiplier against linear" in summary and "Estimator variance at fixed weights" in summary
    points = (directory / "points.csv").read_text().splitlines()
    assert {line.split(",")[0] for line in points[1:]} == set(VARIANTS)  # the objective column names the variant

    # a partial study: a failed run, a diverged one and a missing result are reported, and the rest still fit
    results = sorted(directory.glob("*/result.json"))
    failed, diverged, missing = results[0], results[1], results[2]
    rec = json.loads(failed.read_text())
    failed.write_text(json.dumps({**rec, "status": "failed", "error": "killed"}))
    rec = json.loads(diverged.read_text())
    diverged.write_text(json.dumps({**rec, "val_loss": math.nan}))
    missing.unlink()
    proc = subprocess.run([*cmd, "--report"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((directory / "fit.json").read_text())
    counts = again["fit"]["status_counts"]
    assert counts.get("failed") == 1 and counts.get("diverged") == 1 and counts["done"] == 33
    assert "3 of 36 runs excluded from fits" in " ".join(again["warnings"])


def test_paired_differences_match_runs_of_equal_size_budget_and_seed(tmp_path):
    import numpy as np

    from llada_lightning.scaling import read_points
    from llada_lightning.study.schedule_report import paired_differences

    rng = np.random.default_rng(0)
    lines = ["objective,N,D,budget,loss,seed"]
    for budget in (1e9, 4e9):
        for n in (1e4, 2e4, 4e4):
            for seed in (0, 1):
                base = 5.0 - 0.1 * np.log10(n) + rng.normal(0, 0.01)
                d = budget / (6 * n)
                lines.append(f"linear,{n},{d},{budget},{base},{seed}")
                lines.append(f"worse,{n},{d},{budget},{base + 0.05 + rng.normal(0, 0.002)},{seed}")
                if not (budget == 4e9 and n == 4e4 and seed == 1):  # one run missing: its pair is left out
                    lines.append(f"same,{n},{d},{budget},{base + rng.normal(0, 0.01)},{seed}")
    (tmp_path / "p.csv").write_text("\n".join(lines) + "\n")
    out = paired_differences(
        read_points(tmp_path / "p.csv"), ["linear", "worse", "same"], "linear", n_bootstrap=200, seed=0
    )
    assert set(out) == {"worse", "same"}
    for row in out["worse"]:
        assert row["pairs"] == 6 and row["verdict"] == "resolved: higher loss" and row["low"] < 0.05 < row["high"]
    assert [r["pairs"] for r in out["same"]] == [6, 5]
    assert all(r["verdict"] == "not resolved" and r["low"] < 0 < r["high"] for r in out["same"])
