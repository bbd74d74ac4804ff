"""The scaling package imports no torch, and its command line writes points.csv and fit.json."""

from __future__ import annotations

import json
import subprocess
import sys

from scaling_synth import result_record, study_points, write_run

import llada_lightning.scaling as scaling

PUBLIC = ("fit_parametric", "fit_frontier", "compute_multiplier", "collect", "fit_isoflop", "bootstrap", "fit_study")


def test_public_api():
    for name in PUBLIC:
        assert callable(getattr(scaling, name)) and name in scaling.__all__


def test_import_does_not_pull_torch():
    code = (
        "import sys, llada_lightning.scaling, llada_lightning.scaling.__main__; "
        "bad = [m for m in ('torch', 'lightning', 'torchmetrics') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_command_line_on_a_sweep(tmp_path, rng):
    for objective, c, n, d, loss in study_points(rng):
        for i, (ci, ni, di, li) in enumerate(zip(c, n, d, loss, strict=True)):
            write_run(tmp_path, f"{objective}/r{i:02d}", result_record(objective, ni, di, float(li), ci))
    out = subprocess.run(
        [sys.executable, "-m", "llada_lightning.scaling", str(tmp_path), "--bootstrap", "5", "--no-parametric"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "k(C)" in out.stdout
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert set(fit["objectives"]) == {"arm", "llada"}
    assert (tmp_path / "points.csv").read_text().startswith("objective,model,N,")
