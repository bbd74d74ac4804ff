"""`llada study --quick` end to end: a real IsoFLOP sweep through the local executor, fits, plots, summary; then a
second run that reuses every finished run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NUMBER = r"(-?\d[\d.]*(?:e[+-]?\d+)?|nan)"
FIGURES = ("isoflop", "frontier", "optimal_size", "multiplier")


def study(out: Path) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "llada_lightning.cli", "study", "--quick", "--out", str(out), "--bootstrap", "100"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    return proc, time.perf_counter() - start


def num(text: str) -> float:
    return float("nan") if text == "nan" else float(text)


def close(printed: list[float], expected: list) -> None:
    """Printed with 4 significant digits: equal to the fit's value within rounding (None in JSON prints as nan)."""
    want = np.array([np.nan if v is None else v for v in expected], dtype=float)
    np.testing.assert_allclose(np.array(printed), want, rtol=6e-4, equal_nan=True)


INTERVAL = rf"(?:\[{NUMBER}, {NUMBER}\] \((\d+)/(\d+) refits ok\)|\[unreliable: ([^\]]+)\])"


def check_interval(groups: tuple, rec: dict) -> int:
    """A printed interval (the groups of INTERVAL) against its fit.json record; returns the numbers checked."""
    low, high, n_ok, n_total, unreliable = groups
    if not rec["reliable"]:
        assert unreliable and not low, (groups, rec)  # never printed as an interval
        return 0
    assert not unreliable, (groups, rec)
    close([num(low), num(high)], [rec["low"], rec["high"]])
    assert (int(n_ok), int(n_total)) == (rec["n_ok"], rec["n_resamples"]), (groups, rec)  # always said
    return 4


def check_summary_against_fit(text: str, fit: dict) -> int:
    """Every number of the summary's fit lines equals fit.json's; returns how many numbers were checked."""
    checked = 0
    for objective, sec in fit["objectives"].items():
        iso = sec["isoflop"]
        m = re.search(rf"^{objective}: a = {NUMBER} {INTERVAL}  b = {NUMBER}", text, re.M)
        if "error" in iso:
            assert m is None and f"{objective}: IsoFLOP fit failed" in text
        else:
            close([num(m.group(1)), num(m.group(7))], [iso["a"], iso["b"]])
            checked += 2 + check_interval(m.groups()[1:6], iso["interval"]["a"])
        lines = re.findall(rf"^{objective}:   C = {NUMBER}: N\* = {NUMBER}  L\* = {NUMBER}", text, re.M)
        assert len(lines) == len(iso["budgets"]) == 3  # parabolas are reported even when the exponent fit fails
        for groups, b in zip(lines, iso["budgets"], strict=True):
            close([num(g) for g in groups], [b["budget"], b["N_star"], b["L_star"]])
            checked += 3
        fr = sec["frontier"]
        m = re.search(rf"^{objective}: frontier .*alpha = {NUMBER} {INTERVAL}  E = {NUMBER}", text, re.M)
        assert m, text
        close([num(m.group(1)), num(m.group(7))], [fr["alpha"], fr["E"]])
        checked += 2 + check_interval(m.groups()[1:6], fr["interval"]["alpha"])
    cmp = fit["comparison"]
    lines = re.findall(rf"^  C = {NUMBER}: k = {NUMBER} {INTERVAL}", text, re.M)
    assert len(lines) == len(cmp["compute"]) == 3
    for i, groups in enumerate(lines):
        close([num(g) for g in groups[:2]], [cmp["compute"][i], cmp["k"][i]])
        checked += 2 + check_interval(groups[2:7], cmp["interval"]["k"][i])
    return checked


@pytest.mark.slow
def test_quick_study_end_to_end_then_cached(tmp_path):
    out = tmp_path / "study"
    proc, first = study(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    directory = out / "isoflop-quick"
    assert "submitted 18 (local), 6 shared trunk(s)" in proc.stdout  # WSD: one trunk per (objective, size)
    assert len(list(directory.glob("*/result.json"))) == 18 and len(list(directory.glob(".trunks/*/trunk.json"))) == 6
    for name in FIGURES:
        png, pdf = directory / "plots" / f"{name}.png", directory / "plots" / f"{name}.pdf"
        assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 10_000, png
        assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 5_000, pdf
        rows = (directory / "plots" / f"{name}.csv").read_text().splitlines()
        assert rows and "," in rows[0]  # a header at least: the quick sweep may leave N*(C) without vertices
        assert name == "optimal_size" or len(rows) > 3, (name, rows)
    fit = json.loads((directory / "fit.json").read_text())
    assert fit["status_counts"] == {"done": 18}
    assert check_summary_against_fit(proc.stdout, fit) >= 24  # point estimates, plus 4 numbers per reliable interval
    summary = (directory / "summary.txt").read_text()
    assert summary.strip().splitlines()[0] in proc.stdout and f"fit: {directory / 'fit.json'}" in summary
    # the tiny budgets put the optimum below the sizes: the study says so instead of failing
    assert re.search(r"^warnings \(\d+\):", proc.stdout, re.M)

    proc2, second = study(out)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    assert "submitted 0 (local), skipped 18" in proc2.stdout
    assert second < 60 and second < first / 2, (first, second)
    assert json.loads((directory / "fit.json").read_text()) == fit  # same runs, same seed: the same fit


@pytest.mark.parametrize("under", [False, True])
def test_study_out_that_is_a_file_is_one_line_before_any_run(tmp_path, capsys, under):
    from llada_lightning.cli import main

    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    out = blocker / "sub" if under else blocker
    assert main(["study", "--quick", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1 and "is a file, not a directory; choose another --out" in err[0]
    assert blocker.read_text() == "mine"
