"""fit_study end to end on a synthetic ARM/MDM sweep whose exponents, k and optimal-size ratio are known."""

from __future__ import annotations

import json

import numpy as np
from scaling_synth import A_OPT, BUDGETS, K_MDM, result_record, study_points, write_run

from llada_lightning.scaling import collect, fit_study

FEW_STARTS = [[a, b, 0.0, 0.5, 0.5] for a in (0, 10, 20) for b in (0, 10, 20)]  # 9 starts of the specified grid


def write_study_sweep(root, rng):
    for objective, c, n, d, loss in study_points(rng, sigma=0.002):
        for i, (ci, ni, di, li) in enumerate(zip(c, n, d, loss, strict=True)):
            write_run(root, f"{objective}/r{i:02d}", result_record(objective, ni, di, float(li), ci))


def test_study_recovers_exponents_multiplier_and_size_ratio(tmp_path, rng):
    write_study_sweep(tmp_path, rng)
    # 95% intervals at one fixed seed: a demonstration on one data set (k and the ratio at the 6 budgets each come
    # from one pair of fits); that the intervals cover at their nominal rate is the coverage test below.
    study = fit_study(
        collect(tmp_path, verbose=False), n_bootstrap=200, seed=0, level=0.95, parametric_starts=FEW_STARTS
    )
    json.dumps(study, allow_nan=False)  # JSON-serialisable as is
    assert set(study["objectives"]) == {"arm", "llada"}
    for objective in ("arm", "llada"):
        sec = study["objectives"][objective]
        iso, fr, par = sec["isoflop"], sec["frontier"], sec["parametric"]
        assert len(iso["budgets_used"]) == len(BUDGETS)
        rec = iso["interval"]["a"]
        lo, hi = rec["low"], rec["high"]
        assert rec["reliable"] and lo <= A_OPT <= hi and lo <= iso["a"] <= hi, (objective, rec)
        assert rec["scheme"] == "residual" and rec["n_resamples"] == 200 and rec["n_ok"] + rec["n_failed"] == 200
        assert abs(iso["a"] + iso["b"] - 1) < 1e-6  # D* ~ C / (6 N*), read off result.json's integer token counts
        assert all(b["interior"] and b["log10_span"] > 0.99 for b in iso["budgets"])
        assert fr["source"] == "isoflop_vertex" and fr["irreducible"]
        lo, hi = fr["interval"]["alpha"]["low"], fr["interval"]["alpha"]["high"]
        assert lo <= fr["alpha"] <= hi and hi - lo < 0.2
        assert abs(fr["holdout"]["rel_error"]) < 0.01  # the frontier predicts its largest budget
        assert par["n_starts"] == len(FEW_STARTS) and par["bootstrap"]["n_ok"] + par["bootstrap"]["n_failed"] == 200
        lo, hi = par["interval"]["alpha"]["low"], par["interval"]["alpha"]["high"]
        assert lo <= par["alpha"] <= hi
    cmp = study["comparison"]
    np.testing.assert_allclose(cmp["compute"], BUDGETS)
    k = np.array(cmp["k"])
    assert all(r["reliable"] for r in cmp["interval"]["k"] + cmp["interval"]["optimal_size_ratio"])
    k_lo, k_hi = (np.array([r[key] for r in cmp["interval"]["k"]]) for key in ("low", "high"))
    assert np.all(k_lo <= K_MDM) and np.all(k_hi >= K_MDM), (k_lo, k_hi)
    assert np.all((k_lo <= k) & (k <= k_hi))
    ratio_true = K_MDM**-A_OPT  # N*_MDM(C) = N*_ARM(C / 16)
    r_lo, r_hi = (np.array([r[key] for r in cmp["interval"]["optimal_size_ratio"]]) for key in ("low", "high"))
    assert np.all(r_lo <= ratio_true) and np.all(ratio_true <= r_hi), (r_lo, r_hi)
    np.testing.assert_allclose(cmp["optimal_size_ratio"], ratio_true, rtol=0.1)


def test_study_without_bootstrap_or_second_objective(tmp_path, rng):
    objective, c, n, d, loss = study_points(rng)[0]
    for i, (ci, ni, di, li) in enumerate(zip(c, n, d, loss, strict=True)):
        write_run(tmp_path, f"r{i:02d}", result_record(objective, ni, di, float(li), ci))
    study = fit_study(collect(tmp_path, verbose=False), n_bootstrap=0, parametric=False, frontier="power")
    assert "comparison" not in study and any("no comparison" in w for w in study["warnings"])
    fr = study["objectives"]["arm"]["frontier"]
    assert not fr["irreducible"] and fr["E"] == 0.0 and "interval" not in fr
    json.dumps(study, allow_nan=False)


def test_a_frontier_that_does_not_fall_with_compute_is_warned(tmp_path):
    # every budget's parabola has its minimum 3.0 at a different N: L*(C) is flat, alpha = 0
    for j, budget in enumerate(BUDGETS):
        centre = 8.0 + 0.5 * j
        for i, log_n in enumerate(centre + np.linspace(-0.6, 0.6, 5)):
            n = 10**log_n
            loss = 3.0 + 0.1 * (log_n - centre) ** 2
            write_run(tmp_path, f"b{j}-{i}", result_record("arm", n, budget / (6 * n), loss, budget))
    study = fit_study(collect(tmp_path, verbose=False), n_bootstrap=0, parametric=False)
    fr = study["objectives"]["arm"]["frontier"]
    assert abs(fr["alpha"]) < 1e-3
    assert any("does not fall with compute" in w for w in study["warnings"]), study["warnings"]


def test_points_without_a_budget_and_power_law_frontiers_are_said(tmp_path, rng):
    from scaling_synth import BUDGETS as ALL

    for objective, c, n, d, loss in study_points(rng, sigma=0.002, budgets=ALL[:3], n_sizes=5):
        for i, (ci, ni, di, li) in enumerate(zip(c, n, d, loss, strict=True)):
            write_run(tmp_path, f"{objective}/r{i:02d}", result_record(objective, ni, di, float(li), ci))
    stepped = result_record("arm", 1e8, 1e9, 3.5, 1.0)
    stepped["flops_budget"] = None  # launched by step count
    write_run(tmp_path, "arm/stepped", stepped)
    study = fit_study(collect(tmp_path, verbose=False), n_bootstrap=0, parametric=False)
    assert any("1 of 16 points have no FLOP budget" in w for w in study["warnings"]), study["warnings"]
    assert study["comparison"]["assumes"] == "E = 0 for llada, arm (pure power-law frontier)"
    assert any("k(C) and its intervals assume it" in w for w in study["warnings"])
