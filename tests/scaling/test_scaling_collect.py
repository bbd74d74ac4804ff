"""Collecting a sweep: every run accounted for (done, failed, diverged, missing, unreadable), CSV in and out."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from scaling_synth import (
    A_OPT,
    ALPHA,
    BETA,
    A,
    B,
    E,
    chinchilla_loss,
    config_yaml,
    isoflop_grid,
    noisy,
    result_record,
    write_run,
)

from llada_lightning.scaling import (
    collect,
    fit_frontier,
    fit_isoflop,
    fit_parametric,
    fit_study,
    read_points,
    write_csv,
)

BUDGETS = (1e18, 1e19, 1e20, 1e21)


def write_sweep(root, rng, *, n_sizes=5, sigma=0.002):
    """An ARM IsoFLOP sweep at BUDGETS, runs in <root>/<sweep>/<signature>/ (one budget nested a level deeper)."""
    c, n, d = isoflop_grid(BUDGETS, n_sizes=n_sizes, half_width=0.5)
    loss = noisy(chinchilla_loss(n, d), sigma, rng)
    for i, (ci, ni, di, li) in enumerate(zip(c, n, d, loss, strict=True)):
        sub = f"sweep/deep/r{i:02d}" if ci == BUDGETS[-1] else f"sweep/r{i:02d}"
        write_run(root, sub, result_record("arm", ni, di, float(li), ci))
    return c, n, d, loss


def test_complete_sweep_is_read_with_its_columns(tmp_path, rng):
    c, n, d, loss = write_sweep(tmp_path, rng)
    table = collect(tmp_path, verbose=False)
    assert len(table) == len(c) and table.status_counts() == {"done": len(c)}
    by_name = {os.path.basename(r["run_dir"]): r for r in table.rows}  # runs are named r00.. in the order written
    for i in range(len(c)):
        row = by_name[f"r{i:02d}"]
        assert (row["N"], row["loss"], row["budget"], row["objective"]) == (int(n[i]), loss[i], c[i], "arm")
    np.testing.assert_allclose(table.column("C"), 6 * table.column("N") * table.column("D"))  # 6N convention


def test_partial_sweep_reports_and_excludes_bad_runs(tmp_path, rng, capsys):
    write_sweep(tmp_path, rng)
    med = float(np.median(chinchilla_loss(*isoflop_grid([1e19], 5)[1:])))
    n0, d0 = 3e8, 1e19 / 1.8e9
    write_run(tmp_path, "sweep/failed", result_record("arm", n0, d0, None, 1e19, status="failed"))
    crash = {"status": "failed", "error": "RuntimeError: CUDA out of memory", "traceback": "...", "time": 0.0}
    write_run(tmp_path, "sweep/crash", crash, config=config_yaml("llada", "cpu-2m", 1e20))  # as sweep/job.py writes
    write_run(tmp_path, "sweep/nan", result_record("arm", n0, d0, float("nan"), 1e19))
    write_run(tmp_path, "sweep/huge", result_record("arm", n0, d0, 50.0, 1e19), config=config_yaml("arm", "x", 1e19))
    write_run(tmp_path, "sweep/outlier", result_record("arm", n0, d0, 2.5 * med, 1e19))  # < ln(V)+1 but 2.5x median
    write_run(tmp_path, "sweep/running", None, config=config_yaml("arm", "cpu-1m", 1e20))
    (write_run(tmp_path, "sweep/torn", None) / "result.json").write_text('{"status": "do')
    table = collect(tmp_path)
    printed = capsys.readouterr().out
    status = {os.path.basename(r["run_dir"]): (r["status"], r["reason"]) for r in table.rows}
    assert status["failed"][0] == "failed" and "'failed'" in status["failed"][1]
    assert status["crash"] == ("failed", "result status 'failed': RuntimeError: CUDA out of memory")
    crash_row = next(r for r in table.rows if r["run_dir"].endswith("crash"))
    assert (crash_row["objective"], crash_row["model"], crash_row["budget"]) == ("llada", "cpu-2m", 1e20)
    assert status["nan"][0] == "diverged" and "non-finite" in status["nan"][1]
    assert status["huge"][0] == "diverged" and "ln(vocab 4096) + 1" in status["huge"][1]
    assert status["outlier"][0] == "diverged" and "median" in status["outlier"][1]
    assert status["running"][0] == "missing"
    assert status["torn"][0] == "unreadable"
    assert table.status_counts() == {"done": 20, "failed": 2, "diverged": 3, "missing": 1, "unreadable": 1}
    for name in ("failed", "crash", "nan", "huge", "outlier", "running", "torn"):
        assert name in printed  # reported, not silently dropped
    assert len(table.usable()) == 20 and len(table.excluded()) == 7
    # fits on the usable runs still succeed
    u = table.usable()
    fit = fit_isoflop(u.column("budget"), u.column("N"), u.column("loss"), u.column("D"))
    assert abs(fit.a - A_OPT) < 0.05
    study = fit_study(table, n_bootstrap=0, parametric=False)
    assert study["status_counts"]["diverged"] == 3 and len(study["excluded"]) == 7
    assert study["objectives"]["arm"]["n_points"] == 20
    assert abs(study["objectives"]["arm"]["isoflop"]["a"] - A_OPT) < 0.05
    json.dumps(study, allow_nan=False)


def test_missing_sizes_that_leave_a_budget_short_are_reported_by_the_fit(tmp_path, rng):
    write_sweep(tmp_path, rng)
    # lose 3 of the 5 runs of budget 1e18: that budget is skipped (with why), the others still fit
    for i in range(3):
        os.remove(tmp_path / f"sweep/r{i:02d}/result.json")
        (tmp_path / f"sweep/r{i:02d}/config.yaml").write_text(config_yaml("arm", f"m{i}", 1e18))
    study = fit_study(collect(tmp_path, verbose=False), n_bootstrap=0, parametric=False)
    iso = study["objectives"]["arm"]["isoflop"]
    assert study["status_counts"] == {"done": 17, "missing": 3}
    assert 1e18 not in iso["budgets_used"] and len(iso["budgets_used"]) == 3
    assert any("budget 1e+18 has only 2 model sizes" in w for w in study["warnings"])


def test_degenerate_sweep_is_an_error_not_a_wrong_answer(tmp_path, rng):
    for i, ci in enumerate(BUDGETS):  # one size per budget
        ni = 1e8 * 3**i
        write_run(
            tmp_path, f"s/r{i}", result_record("arm", ni, ci / (6 * ni), float(chinchilla_loss(ni, ci / (6 * ni))), ci)
        )
    table = collect(tmp_path, verbose=False)
    u = table.usable()
    with pytest.raises(ValueError, match="has only 1 model sizes; an IsoFLOP fit needs >= 3 — add sizes to the sweep"):
        fit_isoflop(u.column("budget"), u.column("N"), u.column("loss"))
    study = fit_study(table, n_bootstrap=0, parametric=False)
    iso = study["objectives"]["arm"]["isoflop"]
    assert "a" not in iso and "has only 1 model sizes" in iso["error"]
    # nor is the lowest loss of a budget with one size a frontier point: no law at all, said, not hidden
    frontier = study["objectives"]["arm"]["frontier"]
    assert frontier["source"] == "budget_minimum" and "error" in frontier
    assert any("4 budgets with fewer than 2 sizes left out" in w for w in study["warnings"]), study["warnings"]


def test_write_csv_is_atomic_and_round_trips(tmp_path, rng, monkeypatch):
    write_sweep(tmp_path / "runs", rng)
    write_run(tmp_path / "runs", "sweep/failed", result_record("arm", 1e8, 1e10, None, 1e19, status="failed"))
    table = collect(tmp_path / "runs", verbose=False)
    out = write_csv(table, tmp_path / "points.csv")
    back = read_points(out)
    assert len(back) == len(table)
    for col in ("N", "D", "C", "budget", "loss"):
        np.testing.assert_array_equal(back.column(col), table.column(col))
    assert list(back.column("status")) == list(table.column("status"))
    assert list(back.column("objective")) == list(table.column("objective"))
    # a failed write leaves the previous file whole and no temporary file behind
    before = out.read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_csv(table.usable(), out)
    assert out.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.csv", "runs"]


def test_external_csv_with_published_column_names_fits(tmp_path, rng):
    nn = 10 ** rng.uniform(7.0, 11.0, 120)
    dd = 10 ** rng.uniform(8.0, 13.0, 120)
    loss = noisy(chinchilla_loss(nn, dd), 0.002, rng)
    lines = ["n_params,tokens,loss"] + [
        f"{a!r},{b!r},{c!r}" for a, b, c in zip(nn.tolist(), dd.tolist(), loss.tolist(), strict=True)
    ]
    (tmp_path / "pub.csv").write_text("\n".join(lines) + "\n")
    pts = read_points(tmp_path / "pub.csv", objective="chinchilla")
    assert len(pts.usable()) == 120 and set(pts.column("objective")) == {"chinchilla"}
    np.testing.assert_allclose(pts.column("C"), 6 * nn * dd)  # C = 6 N D when absent
    starts = [[0, 0, 0, 0.5, 0.5], [10, 10, 0, 0.5, 0.5], [20, 20, 0, 0.5, 0.5], [10, 0, 0, 0.5, 0.5]]
    fit = fit_parametric(pts.column("N"), pts.column("D"), pts.column("loss"), starts=starts)
    # at 100-150 points and 0.3% noise the bootstrap sd of alpha and beta is ~0.003 (test_scaling_parametric's
    # intervals): 0.02 is several sd; A and B are far less determined (they trade off with the exponents)
    assert abs(fit.alpha - ALPHA) < 0.02 and abs(fit.beta - BETA) < 0.02 and abs(fit.E - E) < 0.05
    assert abs(np.log(fit.A / A)) < 0.3 and abs(np.log(fit.B / B)) < 0.3


def test_external_csv_of_compute_and_loss_fits_a_frontier(tmp_path):
    c = np.logspace(18, 23, 8)
    loss = 1.7 + 900.0 * c**-0.15
    text = "Compute,Val_Loss,Objective\n" + "".join(
        f"{a:.6e},{b!r},arm\n" for a, b in zip(c, loss.tolist(), strict=True)
    )
    (tmp_path / "f.csv").write_text(text)
    pts = read_points(tmp_path / "f.csv")
    assert np.isnan(pts.column("N")).all()
    fit = fit_frontier(pts.column("C"), pts.column("loss"))
    assert pytest.approx(1.7, rel=1e-4) == fit.E and fit.alpha == pytest.approx(0.15, rel=1e-4)


def test_external_csv_without_loss_or_compute_is_refused(tmp_path):
    (tmp_path / "a.csv").write_text("N,D\n1,2\n")
    with pytest.raises(ValueError, match="no loss column"):
        read_points(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("N,loss\n1e8,3.0\n")
    with pytest.raises(ValueError, match="compute column"):
        read_points(tmp_path / "b.csv")


def test_csv_diverged_rows_are_flagged(tmp_path):
    (tmp_path / "p.csv").write_text("C,loss\n1e18,3.0\n1e19,nan\n1e20,2.5\n")
    pts = read_points(tmp_path / "p.csv")
    assert list(pts.column("status")) == ["done", "diverged", "done"]
    assert math.isnan(pts.column("loss")[1])


def test_every_bad_csv_row_is_listed_with_its_row_and_column(tmp_path):
    rows = [
        "N,D,C,loss",
        "1e8,1e10,6e18,3.0",  # row 1: good
        "-1e8,1e10,6e18,3.0",  # row 2: N negative
        "1e8,1e10,6e18,-0.5",  # row 3: loss negative
        "1e8,1e10,abc,3.0",  # row 4: C not a number
        "1e8,1e10,0,3.0",  # row 5: C = 0
        "1e8,1e10,9e18,3.0",  # row 6: C = 1.5 x 6ND
        "2e8,1e10,,3.1",  # row 7: no C: derived as 6ND, used
        "1e8,1e10,6e18,3.0",  # row 8: a copy of row 1
        ",1e10,6e18,3.0",  # row 9: N empty
        "1e8,1e10,6e18,nan",  # row 10: a non-finite loss is a diverged run
    ]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    table = read_points(tmp_path / "p.csv")
    status = [(r["status"], r["reason_kind"]) for r in table.rows]
    assert status == [
        ("done", ""),
        ("invalid", "N not positive"),
        ("invalid", "loss not positive"),
        ("invalid", "C not a number"),
        ("invalid", "C not positive"),
        ("invalid", "C inconsistent with 6 N D"),
        ("done", ""),
        ("duplicate", "duplicate (same values)"),
        ("invalid", "N missing"),
        ("diverged", "non-finite loss"),
    ]
    reasons = [r["reason"] for r in table.rows]
    assert reasons[1] == "row 2 (line 3): column N = '-1e8' is not positive"
    assert reasons[3] == "row 4 (line 5): column C = 'abc' is not a number"
    assert reasons[5].startswith("row 6 (line 7): column C = 9e+18 differs from 6 N D = 6e+18 by +50.0% (> 2%)")
    assert reasons[7] == "row 8: the same values as row 1"
    assert table.rows[6]["C"] == 6 * 2e8 * 1e10 and table.notes == ["C derived as 6 N D in 1 row(s) that give none"]
    assert not any(math.isfinite(v) and v <= 0 for v in table.usable().column("C"))  # nothing replaced silently
    assert table.reason_counts() == {
        "invalid": {"N not positive": 1, "loss not positive": 1, "C not a number": 1, "C not positive": 1,
                    "C inconsistent with 6 N D": 1, "N missing": 1},
        "duplicate": {"duplicate (same values)": 1},
        "diverged": {"non-finite loss": 1},
    }  # fmt: skip
    report = table.report()
    assert "invalid by reason: " in report and "C not a number: 1" in report and "row 4 (line 5)" in report


def test_full_convention_csv_rows_may_exceed_6nd_but_not_fall_below(tmp_path):
    (tmp_path / "p.csv").write_text("N,D,C,loss\n1e8,1e10,9e18,3.0\n1e8,1e10,5e18,3.1\n")
    in_6n = read_points(tmp_path / "p.csv")  # the default 6N convention: 1.5 x and 0.83 x 6 N D are both wrong
    assert [r["reason_kind"] for r in in_6n.rows] == ["C inconsistent with 6 N D"] * 2
    table = read_points(tmp_path / "p.csv", convention="full")
    assert [(r["status"], r["reason_kind"]) for r in table.rows] == [("done", ""), ("invalid", "C below 6 N D")]


def test_sweep_results_with_bad_values_or_copies_are_reported_not_fitted(tmp_path, rng):
    write_sweep(tmp_path, rng)
    bad = result_record("arm", 3e8, 5e9, 3.0, 1e19)
    bad["N_nonemb"] = -3e8
    write_run(tmp_path, "sweep/negative", bad)
    odd = result_record("arm", 3e8, 5e9, 3.0, 1e19, seed=1)
    odd["flops_6N"] = 2.0 * odd["flops_6N"]
    write_run(tmp_path, "sweep/inconsistent", odd)
    text = result_record("arm", 3e8, 5e9, 3.0, 1e19, seed=2)
    text["tokens"] = "many"
    write_run(tmp_path, "sweep/text", text)
    original = json.loads((tmp_path / "sweep/r00/result.json").read_text())
    write_run(tmp_path, "sweep/zz-copy", original)  # a copied run directory: the same signature
    table = collect(tmp_path, verbose=False)
    by_dir = {os.path.basename(r["run_dir"]): r for r in table.rows}
    assert (
        by_dir["negative"]["status"] == "invalid"
        and "N_nonemb = -300000000.0 is not positive" in by_dir["negative"]["reason"]
    )
    assert by_dir["inconsistent"]["reason_kind"] == "flops_6N inconsistent with 6 N_nonemb tokens"
    assert by_dir["text"]["reason_kind"] == "tokens not a number"
    assert by_dir["zz-copy"]["status"] == "duplicate" and by_dir["r00"]["status"] == "done"
    assert by_dir["zz-copy"]["reason"].endswith(f"the same signature as {tmp_path / 'sweep/r00'}")
    assert table.status_counts() == {"done": 20, "invalid": 3, "duplicate": 1}
    assert len(fit_study(table, n_bootstrap=0, parametric=False)["excluded"]) == 4


def test_compute_must_belong_to_its_budget(tmp_path):
    rows = [
        "N,D,C,budget,loss",
        "1e8,1.6667e9,1e18,1e18,3.0",
        "1e8,1.6667e9,1e18,1e19,3.1",
        "1e8,1.3e9,0.78e18,1e18,3.2",
    ]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    table = read_points(tmp_path / "p.csv")
    assert [(r["status"], r["reason_kind"]) for r in table.rows] == [
        ("done", ""),
        ("invalid", "C inconsistent with budget"),  # a 1e18 run filed under 1e19
        ("invalid", "C inconsistent with budget"),  # 22% short of its budget: not a run of it
    ]
    assert "-90.0% off column budget = 1e+19" in table.rows[1]["reason"]


def test_a_seeded_run_repeated_with_another_loss_is_a_duplicate_not_a_replicate(tmp_path):
    rows = ["N,D,loss,seed", "1e8,1e10,3.0,0", "1e8,1e10,3.2,0", "1e8,1e10,3.1,1", "1e8,1e10,3.3,"]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    table = read_points(tmp_path / "p.csv")
    assert [r["status"] for r in table.rows] == ["done", "duplicate", "done", "done"]
    assert table.rows[1]["reason"] == "row 2: the same run (seed) with another loss as row 1"


def test_one_run_with_an_unknown_convention_is_invalid_and_the_rest_fit(tmp_path, rng):
    write_sweep(tmp_path, rng)
    odd = result_record("arm", 3e8, 5e9, 3.0, 1e19)
    odd["flops_convention"] = "weird"
    write_run(tmp_path, "sweep/weird", odd)
    table = collect(tmp_path, verbose=False)
    row = next(r for r in table.rows if r["run_dir"].endswith("weird"))
    assert row["status"] == "invalid" and "flops_convention = 'weird' is not 6N or full" in row["reason"]
    assert row["reason"].startswith(str(tmp_path / "sweep/weird")) and len(table.usable()) == 20


def test_unique_tokens_and_epochs_are_collected_and_round_trip(tmp_path):
    for i, (u, d) in enumerate([(1e6, 1e6), (1e6, 3.2e7), (4e6, 3.2e7)]):
        record = result_record("llada", 1e5, d, 4.0 - 0.1 * i, 6 * 1e5 * d, seed=i)
        write_run(tmp_path / "runs", f"dc/r{i}", {**record, "unique_tokens": int(u), "data_epochs": d / u})
    write_run(tmp_path / "runs", "dc/old", result_record("llada", 1e5, 1e6, 4.5, 6e11, seed=9))  # an older record
    table = collect(tmp_path / "runs", verbose=False)
    by_name = {os.path.basename(r["run_dir"]): r for r in table.rows}
    assert [(by_name[f"r{i}"]["U"], by_name[f"r{i}"]["epochs"]) for i in range(3)] == [(1e6, 1), (1e6, 32), (4e6, 8)]
    assert math.isnan(by_name["old"]["U"]) and math.isnan(by_name["old"]["epochs"])
    back = read_points(write_csv(table, tmp_path / "points.csv"))
    np.testing.assert_array_equal(back.column("U"), table.column("U"))
    np.testing.assert_array_equal(back.column("epochs"), table.column("epochs"))
    (tmp_path / "pub.csv").write_text("params,tokens,unique_tokens,loss\n1e8,1e10,1e9,3.1\n")
    assert read_points(tmp_path / "pub.csv").column("U").tolist() == [1e9]
