"""`llada bench --quick`: one table with every row, and the same rows in its JSON (each measured, or saying why not)."""

from __future__ import annotations

import json
from pathlib import Path

from llada_lightning.bench.suite import ROW_NAMES
from llada_lightning.cli import main


def test_quick_bench_prints_one_table_and_writes_every_row(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == list(ROW_NAMES)
    assert result["mode"] == "quick" and "CPU" in result["machine"]
    for name, row in rows.items():
        assert name in table
        if name == "torch.compile":
            assert "skipped in --quick" in row["error"]
        else:
            assert not row["error"] and row["value"] > 0, row
    assert 0 < rows["CPU MFU"]["value"] < 1
    assert rows["sampler overhead"]["value"] >= 1.0 and rows["likelihood overhead"]["value"] >= 1.0
