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
    code, text, _ = run(capsys, "scaling", "collect", str(root), "--out", str(out), "--json")
    report = json.loads(text)
    assert report["status_counts"] == {"done": n_runs, "failed": 1, "missing": 1}
    assert {Path(e["run_dir"]).name for e in report["excluded"]} == {"crashed", "lost"}


def test_fit_writes_fit_json_and_a_summary_of_its_numbers(sweep, capsys):
    root, n_runs = sweep
    code, text, _ = run(capsys, "scaling", "fit", str(root), "--bootstrap", "20", "--no-parametric")
    assert code == 0
    fit = json.loads((root / "fit.json").read_text())
    assert len(read_csv(root / "points.csv")) == n_runs
    for objective in ("llada", "arm"):
        iso = fit["objectives"][objective]["isoflop"]
        m = re.search(rf"^{objective}: a = {NUMBER} \[{NUMBER}, {NUMBER}\]  b = {NUMBER}", text, re.M)
        assert m, text
        a, lo, hi, b = (float(g) for g in m.groups())
        np.testing.assert_allclose([a, lo, hi, b], [iso["a"], *iso["interval"]["a"], iso["b"]], rtol=1e-3)
    cmp = fit["comparison"]
    printed_k = [float(v) for v in re.findall(rf"^  C = {NUMBER}: k = {NUMBER}", text, re.M) for v in v[1:]]
    np.testing.assert_allclose(printed_k, cmp["k"], rtol=1e-3)
    code, text, _ = run(capsys, "scaling", "fit", str(root), "--bootstrap", "20", "--no-parametric", "--json")
    assert code == 0 and json.loads(text) == fit  # same seed, same data: the same fit


def test_plot_writes_png_pdf_and_the_csv_of_each_figure(sweep, capsys):
    root, _ = sweep
    code, text, _ = run(capsys, "scaling", "plot", str(root), "--bootstrap", "20", "--no-parametric")
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
    np.testing.assert_allclose([float(r["k_low"]) for r in budget_k], fit["comparison"]["interval"]["k"][0])
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
        "import sys, llada_lightning.scaling.cli, llada_lightning.scaling.study_cli; "
        "bad = [m for m in ('torch', 'lightning', 'matplotlib') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
