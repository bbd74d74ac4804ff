"""`llada sft`: both objectives fine-tune a parent into a new run, lower the held-out answer loss, resume exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llada_lightning.cli import main
from llada_lightning.config.compose import compose, load_run_config
from llada_lightning.inference.loading import load_run
from llada_lightning.sft.parent import load_parent_weights
from llada_lightning.training.modules import build_module

SFT = ["train.max_steps=60", "train.warmup_min_steps=5", "train.progress_bar=false", "train.val_batches=4"]


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["llada", "arm"])
def test_sft_lowers_the_held_out_answer_loss_and_records_its_parent(parents, tmp_path: Path, capsys, objective) -> None:
    out = tmp_path / objective
    assert main(["sft", str(parents[objective]), "data=instructions", *SFT, f"run_dir={out}"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["objective"] == objective and result["parent"] == str(parents[objective].resolve())
    assert result["val_loss"] < result["val_loss_initial"] - 0.5, result
    assert load_run_config(out / "config.yaml").sft.parent == str(parents[objective])
    assert (out / "tokenizer.json").is_file()
    # SFT batches are shorter than data.seq_len: tokens count the padded batches actually trained
    assert 0 < result["tokens"] < 60 * 16 * 64
    capsys.readouterr()
    assert main(["sft", str(parents[objective]), "data=instructions", *SFT, f"run_dir={out}"]) == 0
    assert "already done" in capsys.readouterr().out  # relaunching does not train again


def test_the_first_start_copies_the_parent_weights(parents, tmp_path: Path) -> None:
    cfg = compose([f"sft.parent={parents['llada']}", f"runs_root={tmp_path}"])
    module = build_module(cfg)
    load_parent_weights(module.model, cfg.sft.parent)
    parent = load_run(parents["llada"]).model.state_dict()
    mine = module.model.state_dict()
    old_vocab = load_run_config(parents["llada"] / "config.yaml").model.vocab_size
    for name, value in parent.items():
        if name == "embed.weight":  # the mask row (SMDM's reserved last row) stays last; new rows in between
            assert torch.equal(mine[name][:old_vocab], value[:old_vocab])
            assert torch.equal(mine[name][-1], value[-1])
            assert torch.allclose(mine[name][old_vocab], value[:-1].mean(dim=0))
        elif name == "head.weight":
            assert torch.equal(mine[name][:old_vocab], value)
        else:
            assert torch.equal(mine[name], value), name


def test_bad_parent_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["sft", str(tmp_path / "missing"), "data=instructions"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sft.parent=" in err[0] and "no such run directory" in err[0]


def _llada_sft(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "llada_lightning.cli", "sft", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_sft_resumes_bit_identically_after_sigkill(parents, tmp_path: Path) -> None:
    args = [str(parents["llada"]), "train.max_steps=50", "train.ckpt_every_n_steps=10", "train.warmup_min_steps=5"]
    args += ["train.val_every_n_steps=25", "train.accumulate_grad_batches=2", "train.batch_size=8"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    proc = _llada_sft([*args, f"run_dir={reference}"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out

    proc = _llada_sft([*args, f"run_dir={killed}"])
    ckpt = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline:  # a mid-training checkpoint (step 20 or later), then SIGKILL
        if ckpt.is_file():
            try:
                if torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] >= 20:
                    break
            except (RuntimeError, EOFError):  # caught mid-rename: look again
                pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]
    assert 20 <= killed_at < 50 and not (killed / "result.json").exists()

    proc = _llada_sft([*args, f"run_dir={killed}"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "Restoring states from the checkpoint" in out
    ref, res = _state(reference), _state(killed)
    assert ref.keys() == res.keys()
    for name in ref:
        assert torch.equal(ref[name], res[name]), name
    a = json.loads((reference / "result.json").read_text())
    b = json.loads((killed / "result.json").read_text())
    for key in ("val_loss", "val_loss_initial", "steps", "tokens", "flops_6N", "flops_full"):
        assert a[key] == b[key], key
