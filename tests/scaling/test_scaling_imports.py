"""The scaling package's public API, and that it imports no torch."""

from __future__ import annotations

import subprocess
import sys

import llada_lightning.scaling as scaling

PUBLIC = ("fit_parametric", "fit_frontier", "compute_multiplier", "collect", "fit_isoflop", "bootstrap", "fit_study")


def test_public_api():
    for name in PUBLIC:
        assert callable(getattr(scaling, name)) and name in scaling.__all__


def test_import_does_not_pull_torch():
    code = (
        "import sys, llada_lightning.scaling; "
        "bad = [m for m in ('torch', 'lightning', 'torchmetrics') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
