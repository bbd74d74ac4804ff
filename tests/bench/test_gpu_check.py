"""benchmarks/gpu_check.sh in CPU mode: every CUDA measurement skipped with one line saying so, the CPU-runnable parts
(attention backends, the planner's estimate, the sampler) measured, one table, the JSON in $OUT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_on_cpu_skipping_each_cuda_item_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--skip-setup", "--cpu"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((tmp_path / "gpu_check.json").read_text())["rows"]
    items = {r["item"] for r in rows}
    assert items == {"attention", "train", "memory", "compile", "sampler", "fsdp"}
    status = {(r["item"], r["check"]): r["status"] for r in rows}
    assert status[("attention", "sdpa forward+backward")] == "ok"
    assert status[("attention", "flash forward+backward")] == "skipped"
    for item in ("train", "compile", "fsdp"):
        (skip,) = [r for r in rows if r["item"] == item]
        assert skip["status"] == "skipped" and "needs a CUDA GPU" in skip["detail"]
    memory = [r for r in rows if r["item"] == "memory"]
    assert len(memory) == 2 and all(r["value"] > 1 and "planner" in r["detail"] for r in memory)  # estimate, GB
    sampler = [r for r in rows if r["item"] == "sampler"]
    assert [r["check"] for r in sampler] == ["exact", "dual", "tau 0.9", "tau 0.9 + dual"]
    assert all(r["status"] == "ok" and r["value"] > 0 for r in sampler)
    assert not any(r["status"] in ("failed", "timeout") for r in rows)
    table = proc.stdout
    assert table.count("needs a CUDA GPU") >= 5 and "written: " in table
