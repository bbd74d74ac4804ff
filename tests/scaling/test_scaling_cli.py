"""`llada scaling collect|fit|plot` on synthetic sweep directories whose laws are known (scaling_synth.py)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scaling_synth import config_yaml, result_record, study_points, write_run

from llada_lightning.cli import main

BUDGETS = (1e18, 1e19, 1e20)
FIGURES = ("isoflop", "frontier", "optimal_size", "multiplier")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NUMBER = r"(-?\d[\d.]*(?:e[+-]?\d+)?|nan)"


def write_sweep(root: Path, rng, *, budgets=BUDGETS, n_sizes=4) -> int:
    """An LLaDA/ARM IsoFLOP sweep drawn from known laws; returns the number of runs written."""
    count = 0
    for objective, c, n, d, loss in study_points(rng, sigma=0.002, budgets=budgets, n_sizes=n_sizes):
        for i, (ci, ni, di, li) in enumerate(zip(c, n, d, loss, strict=True)):
            write_run(root, f"{objective}-{i:02d}", result_record(objective, ni, di, float(li), ci))
            count += 1
    return count


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def assert_image(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 5000, (path, len(data))
    assert data.startswith(PNG_MAGIC if path.suffix == ".png" else b"%PDF"), path


@pytest.fixture
def sweep(tmp_path, rng) -> tuple[Path, int]:
    root = tmp_path / "sweep"
    return root, write_sweep(root, rng)


def test_collect_writes_points_and_reports_partial_runs(sweep, tmp_path, capsys):
    root, n_runs = sweep
    write_run(
        root, "crashed", {"status": "failed", "error": "RuntimeError: boom"}, config=config_yaml("arm", "x", 1e19)
    )
    write_run(root, "lost", None, config=config_yaml("llada", "y", 1e20))
    out = tmp_path / "out"
    code, text, _ = run(capsys, "scaling", "collect", str(root), "--out", str(out))
    assert code == 0
    rows = read_csv(out / "points.csv")
    assert len(rows) == n_runs + 2
    status = {Path(r["run_dir"]).name: r["status"] for r in rows}
    assert status["crashed"] == "failed" and status["lost"] == "missing"
    assert f"{n_runs + 2} runs: {n_runs} done, 1 failed, 1 missing" in text
    assert "RuntimeError: boom" in text and "lost" in text
    assert "failed by reason: status 'failed': 1" in text and "missing by reason: no result.json: 1" in text
    code, text, _ = run(capsys, "scaling", "collect", str(root), "--out", str(out), "--json")
    report = json.loads(text)
    assert report["status_counts"] == {"done": n_runs, "failed": 1, "missing": 1}
    assert report["reason_counts"] == {"failed": {"status 'failed'": 1}, "missing": {"no result.json": 1}}
    assert {Path(e["run_dir"]).name for e in report["excluded"]} == {"crashed", "lost"}


def test_fit_writes_fit_json_and_a_summary_of_its_numbers(sweep, capsys):
    root, n_runs = sweep
    code, text, _ = run(capsys, "scaling", "fit", str(root), "--bootstrap", "100", "--no-parametric")
    assert code == 0
    fit = json.loads((root / "fit.json").read_text())
    assert len(read_csv(root / "points.csv")) == n_runs
    for objective in ("llada", "arm"):
        iso = fit["objectives"][objective]["isoflop"]
        m = re.search(
            rf"^{objective}: a = {NUMBER} \[{NUMBER}, {NUMBER}\] \(100/100 refits ok\)  b = {NUMBER}", text, re.M
        )
        assert m, text
        a, lo, hi, b = (float(g) for g in m.groups())
        rec = iso["interval"]["a"]
        np.testing.assert_allclose([a, lo, hi, b], [iso["a"], rec["low"], rec["high"], iso["b"]], rtol=1e-3)
        assert rec["n_resamples"] == 100 and rec["n_failed"] == 0 and rec["reliable"]
    cmp = fit["comparison"]
    printed_k = [float(v) for v in re.findall(rf"^  C = {NUMBER}: k = {NUMBER}", text, re.M) for v in v[1:]]
    np.testing.assert_allclose(printed_k, cmp["k"], rtol=1e-3)
    code, text, _ = run(capsys, "scaling", "fit", str(root), "--bootstrap", "100", "--no-parametric", "--json")
    assert code == 0 and json.loads(text) == fit  # same seed, same data: the same fit


def test_plot_writes_png_pdf_and_the_csv_of_each_figure(sweep, capsys):
    root, _ = sweep
    code, text, _ = run(capsys, "scaling", "plot", str(root), "--bootstrap", "100", "--no-parametric")
    assert code == 0
    plots = root / "plots"
    for name in FIGURES:
        assert_image(plots / f"{name}.png")
        assert_image(plots / f"{name}.pdf")
        assert len(read_csv(plots / f"{name}.csv")) > 3
    assert not [p for p in plots.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    fit = json.loads((root / "fit.json").read_text())  # plot fitted and wrote the fit it drew
    vertices = [r for r in read_csv(plots / "isoflop.csv") if r["kind"] == "vertex" and r["objective"] == "arm"]
    expected = [b["N_star"] for b in fit["objectives"]["arm"]["isoflop"]["budgets"]]
    np.testing.assert_allclose(sorted(float(r["N"]) for r in vertices), sorted(expected))
    runs = [r for r in read_csv(plots / "isoflop.csv") if r["kind"] == "run"]
    assert len(runs) == 2 * 4 * len(BUDGETS)
    budget_k = [r for r in read_csv(plots / "multiplier.csv") if r["kind"] == "budget"]
    np.testing.assert_allclose([float(r["k"]) for r in budget_k], fit["comparison"]["k"])
    np.testing.assert_allclose(
        [float(r["k_low"]) for r in budget_k], [r["low"] for r in fit["comparison"]["interval"]["k"]]
    )
    band = [r for r in read_csv(plots / "frontier.csv") if r["kind"] == "fit" and r["objective"] == "llada"]
    assert float(band[-1]["C"]) > 10 * max(BUDGETS)  # extrapolated past the largest budget
    assert all(float(r["L_low"]) <= float(r["L"]) <= float(r["L_high"]) for r in band)


def test_plot_from_a_given_fit_json_and_a_points_csv(sweep, tmp_path, capsys):
    root, _ = sweep
    assert run(capsys, "scaling", "fit", str(root), "--bootstrap", "0", "--no-parametric")[0] == 0
    out = tmp_path / "figs"
    code, text, _ = run(capsys, "scaling", "plot", str(root / "points.csv"), "--fit", str(root / "fit.json"),
                        "--out", str(out), "--json")  # fmt: skip
    assert code == 0
    files = [Path(f) for f in json.loads(text)["files"]]
    assert {f.name for f in files} == {f"{n}.{e}" for n in FIGURES for e in ("png", "pdf", "csv")}
    assert all(f.parent == out / "plots" and f.stat().st_size > 0 for f in files)
    assert not (out / "fit.json").exists()  # drawn from the given fit, not refitted


def _single_budget_single_size(root: Path) -> None:
    for objective in ("arm", "llada"):
        write_run(root, f"{objective}-a", result_record(objective, 1e8, 1e9, 3.0, 6e17))
        write_run(root, f"{objective}-b", result_record(objective, 1e8, 1e9, 3.01, 6e17, seed=1))


def _all_failed(root: Path) -> None:
    for i in range(3):
        write_run(root, f"r{i}", {"status": "failed", "error": "x"}, config=config_yaml("arm", "m", 1e19))


@pytest.mark.parametrize(
    ("command", "make", "message"),
    [
        ("collect", None, "no such sweep directory or CSV file"),
        ("fit", lambda root: root.mkdir(), "no runs found"),
        ("fit", lambda root: (root.mkdir(), (root / "p.csv").write_text("N,D\n1,2\n")), "no loss column"),
        ("plot", lambda root: (root.mkdir(), (root / "p.csv").write_text("loss,N\n3.0,1e8\n")), "need a compute"),
        ("plot", lambda root: (root.mkdir(), (root / "p.csv").write_text("loss,C\n")), "no rows"),
        ("fit", _all_failed, "no usable runs"),
        ("fit", _single_budget_single_size, "degenerate sweep"),
        ("plot", _single_budget_single_size, "degenerate sweep"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, command, make, message):
    root = tmp_path / "src"
    if make is not None:
        make(root)
    source = root / "p.csv" if (root / "p.csv").exists() else root
    options = () if command == "collect" else ("--bootstrap", "0", "--no-parametric")
    code, out, err = run(capsys, "scaling", command, str(source), *options)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llada: config error:") and message in lines[0], err
    assert not (root / "fit.json").exists()


def test_exit_status_through_the_real_command(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "llada_lightning.cli", "scaling", "fit", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cli_module_stays_light():
    code = (
        "import sys, llada_lightning.scaling.cli, llada_lightning.study.cli; "
        "bad = [m for m in ('torch', 'lightning', 'matplotlib') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _twelve_point_csv(path: Path, rng) -> Path:
    """2 budgets x 3 sizes x 2 objectives: every parabola interpolates its 3 sizes, every line its 2 vertices."""
    lines = ["objective,N,D,C,loss"]
    for objective, c, n, d, loss in study_points(rng, sigma=0.002, budgets=(1e19, 1e20), n_sizes=3):
        rows = zip(c.tolist(), n.tolist(), d.tolist(), loss.tolist(), strict=True)
        lines += [f"{objective},{ni!r},{di!r},{ci!r},{li!r}" for ci, ni, di, li in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


INTERVAL_PAIR = re.compile(rf"\[{NUMBER}, {NUMBER}\]")


def test_twelve_point_csv_prints_no_interval_it_cannot_support(tmp_path, rng, capsys):
    csv_path = _twelve_point_csv(tmp_path / "p.csv", rng)
    code, text, _ = run(capsys, "scaling", "fit", str(csv_path), "--no-parametric", "--out", str(tmp_path / "res"))
    assert code == 0
    fit = json.loads((tmp_path / "res" / "fit.json").read_text())
    for objective in ("arm", "llada"):
        for section, name in (("isoflop", "a"), ("frontier", "alpha")):
            rec = fit["objectives"][objective][section]["interval"][name]
            assert not rec["reliable"] and rec["low"] is None and rec["high"] is None, rec
            assert "no residual degrees of freedom" in rec["problem"], rec
    assert all(not r["reliable"] for r in fit["comparison"]["interval"]["k"])
    fit_lines = [line for line in text.splitlines() if re.search(r" (a|alpha|k) = ", line)]
    assert len(fit_lines) == 6 and all("[unreliable: noise not estimable" in line for line in fit_lines), fit_lines
    assert not any(INTERVAL_PAIR.search(line) for line in fit_lines)  # no interval is printed at all

    # resampling the runs instead fails in almost every refit (a resample of 3 sizes rarely keeps 3): unreliable
    code, text, _ = run(capsys, "scaling", "fit", str(csv_path), "--no-parametric", "--resample", "pairs",
                        "--out", str(tmp_path / "pairs"))  # fmt: skip
    rec = json.loads((tmp_path / "pairs" / "fit.json").read_text())["objectives"]["arm"]["isoflop"]["interval"]["a"]
    assert code == 0 and rec["n_failed"] > 150 and not rec["reliable"] and rec["problem_kind"] == "failed refits"
    assert sum(rec["failures"].values()) == rec["n_failed"]
    assert re.search(rf"^arm: a = {NUMBER} \[unreliable: {rec['n_failed']}/200 refits failed\]", text, re.M), text

    # and 5 resamples cannot make a 95% interval, whatever they give
    code, text, _ = run(capsys, "scaling", "fit", str(csv_path), "--no-parametric", "--resample", "pairs",
                        "--bootstrap", "5", "--out", str(tmp_path / "five"))  # fmt: skip
    assert code == 0 and "[unreliable: only 5 resamples; " in text and not INTERVAL_PAIR.search(text)
    assert "5 bootstrap resamples: a 95% percentile interval needs >= 80" in text


def test_sweep_without_a_budget_axis_is_an_error_with_the_reason(tmp_path, capsys):
    # the `tiny` sweep: 2 objectives x 2 sizes launched by step count, so no run has a FLOP budget
    root = tmp_path / "tiny"
    for objective in ("llada", "arm"):
        for i, (n, d) in enumerate(((1e5, 1e6), (4e5, 1e6))):
            record = result_record(objective, n, d, 5.0 - i * 0.1, 1.0)
            record["flops_budget"] = None
            write_run(root, f"{objective}-{i}", record)
    for command in ("fit", "plot"):
        code, out, err = run(capsys, "scaling", command, str(root), "--bootstrap", "0")
        assert code == 2, (out, err)
        assert "degenerate sweep" in err and "no run has a FLOP budget" in err and len(err.strip().splitlines()) == 1
    assert not (root / "fit.json").exists() and not (root / "plots").exists()


def test_parameters_at_a_bound_print_as_such(tmp_path, capsys):
    # a law without an irreducible loss (E = 0) on an IsoFLOP design of 5 budgets: E goes to its bound
    lines = ["N,D,C,loss"]
    for c in np.logspace(18, 22, 5).tolist():
        for x in np.linspace(-0.5, 0.5, 5).tolist():
            n = 0.1 * c**0.5 * 10**x
            d = c / (6 * n)
            lines.append(f"{n!r},{d!r},{c!r},{406.4 / n**0.34 + 410.7 / d**0.28!r}")
    (tmp_path / "p.csv").write_text("\n".join(lines) + "\n")
    code, text, _ = run(capsys, "scaling", "fit", str(tmp_path / "p.csv"), "--bootstrap", "100", "--no-parametric")
    assert code == 0
    fr = json.loads((tmp_path / "fit.json").read_text())["objectives"]["points"]["frontier"]
    assert fr["at_bound"] == {"E": "lower"} and fr["E"] < 1e-3 * min(fr["points"]["L"])
    # the estimate and any bound of its interval at E = 0 print as 0
    m = re.search(
        r"^points: frontier L\*\(C\) = E \+ A C\^-alpha: .*  E = 0 \(at bound\) \[(0, \S+\]|unreliable)", text, re.M
    )
    assert m, text
    code, text, _ = run(capsys, "scaling", "fit", str(tmp_path / "p.csv"), "--bootstrap", "0", "--starts", "coarse")
    par = json.loads((tmp_path / "fit.json").read_text())["objectives"]["points"]["parametric"]
    assert code == 0 and par["at_bound"].get("E") == "lower"
    assert re.search(r"^points: parametric .*: E = 0 \(at bound", text, re.M), text
    assert not re.search(r"e-\d\d", text)  # no 1e-296 (nor 1e-18) anywhere


def test_long_fits_report_progress_and_short_ones_stay_silent():
    import io

    from llada_lightning.scaling.cli import FitProgress

    now = [0.0]
    out = io.StringIO()
    progress = FitProgress(out, every=10.0, after=5.0, clock=lambda: now[0])
    for done in range(0, 4501, 50):  # a 4500-start fit at 50 starts per second
        now[0] = done / 50
        progress("arm parametric fit", done, 4500)
    lines = out.getvalue().splitlines()
    assert 8 <= len(lines) <= 10 and lines[-1] == "fit: arm parametric fit: 4500/4500 (90 s)", lines
    first = lines[0]  # the first report after 5 s, with the time left estimated from the rate so far
    assert first.startswith("fit: arm parametric fit: 250/4500 (5 s, ~85 s left)"), first
    quiet = io.StringIO()
    short = FitProgress(quiet, clock=lambda: 1.0)
    short("frontier", 200, 200)
    assert quiet.getvalue() == ""


def test_parametric_fit_reports_every_start(rng):
    from llada_lightning.scaling import fit_parametric

    n, d = 10 ** rng.uniform(7, 9, 12), 10 ** rng.uniform(9, 11, 12)
    loss = 1.7 + 400 / n**0.34 + 400 / d**0.28
    starts = [[a, b, 0.0, 0.5, 0.5] for a in (0, 10) for b in (0, 10)]
    for workers in (1, 2):
        seen: list[tuple[int, int]] = []
        fit_parametric(n, d, loss, starts=starts, workers=workers, progress=lambda i, t, s=seen: s.append((i, t)))
        assert seen[-1] == (4, 4) and all(t == 4 for _, t in seen), seen
        assert [i for i, _ in seen] == sorted(i for i, _ in seen)
