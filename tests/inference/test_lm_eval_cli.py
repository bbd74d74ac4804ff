"""`python -m llada_lightning.inference.lm_eval_cli`: lm-eval's command line with the `llada_lightning` model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from inference_tasks import local_mc_task_dir, next_line_task

pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'llada-lightning[eval]')")

from llada_lightning.inference.lm_eval_cli import main  # noqa: E402
from llada_lightning.inference.multiple_choice import evaluate_multiple_choice  # noqa: E402


def test_a_fresh_lm_eval_command_line_finds_the_model(tmp_path, arm_run, arm_run_dir):
    """A new interpreter (nothing imported beforehand, as `lm_eval ...` itself): --model llada_lightning resolves,
    and the harness scores the local task as `llada eval` does."""
    data = next_line_task(tmp_path / "data.jsonl", n=4)
    tasks = local_mc_task_dir(tmp_path, data)
    argv = ["--model", "llada_lightning", "--model_args", f"run_dir={arm_run_dir}", "--tasks", "llada_local_mc"]
    argv += ["--include_path", str(tasks), "--limit", "4", "--output_path", str(tmp_path / "out")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "llada_lightning.inference.lm_eval_cli", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results_file,) = (tmp_path / "out").rglob("results_*.json")
    acc = json.loads(results_file.read_text())["results"]["llada_local_mc"]["acc,none"]
    assert acc == pytest.approx(evaluate_multiple_choice(arm_run, data, limit=4)["acc"])


def test_a_bad_run_directory_is_one_config_error_line(tmp_path, capsys, llada_run_dir):
    data = next_line_task(tmp_path / "data.jsonl", n=2)
    tasks = local_mc_task_dir(tmp_path, data)
    argv = ["--model", "llada_lightning", "--model_args", f"run_dir={tmp_path / 'nope'}", "--tasks", "llada_local_mc"]
    assert main([*argv, "--include_path", str(tasks)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (
        f"llada: config error: {tmp_path / 'nope'}: no such directory; pass a run directory written by `llada train` "
        "or a Hugging Face model directory"
    )
