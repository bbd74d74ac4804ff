"""The study's report puts both FLOP conventions side by side, from the runs' own result.json."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from llada_lightning.study.report import flop_conventions, format_conventions


def _run(tmp_path: Path, name: str, n: float, c6: float, cfull: float, status: str = "done") -> SimpleNamespace:
    run_dir = tmp_path / name
    run_dir.mkdir()
    res = {"status": status, "objective": "llada", "flops_budget": 1e10, "flops_convention": "6N", "N_nonemb": n}
    (run_dir / "result.json").write_text(json.dumps({**res, "flops_6N": c6, "flops_full": cfull}))
    return SimpleNamespace(run_dir=run_dir)


def test_conventions_side_by_side(tmp_path: Path) -> None:
    runs = [
        _run(tmp_path, "big", 3e4, 9.9e9, 2.0e10),
        _run(tmp_path, "small", 2e3, 9.7e9, 6.0e10),
        _run(tmp_path, "failed", 1e3, 0.0, 0.0, status="failed"),  # left out
        SimpleNamespace(run_dir=tmp_path / "never-ran"),
    ]
    section = flop_conventions(runs)
    assert section["used"] == "6N" and "6 N D" in section["why"]
    (cell,) = section["cells"]
    assert (cell["N_min"], cell["N_max"]) == (2e3, 3e4)
    assert (cell["C_6N_min"], cell["C_6N_max"]) == (9.7e9, 9.9e9)
    assert (cell["C_full_at_N_min"], cell["C_full_at_N_max"]) == (6.0e10, 2.0e10)
    text = format_conventions(section)
    assert "2e+10..6e+10" in text and "2.0-6.2" in text  # full / 6N at the largest and the smallest size
