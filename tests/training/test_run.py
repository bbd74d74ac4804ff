"""`llada train` end to end on the embedded corpus: learning, result files, resume, refusal to mix runs."""

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

from llada_lightning.config.compose import compose
from llada_lightning.config.errors import ConfigError
from llada_lightning.flops import flops_per_token, param_counts
from llada_lightning.training.progress import format_count, format_flops
from llada_lightning.training.run import train

TINY = ["model=cpu-0.4m", "data.seq_len=64", "train.batch_size=16", "train.progress_bar=false"]


@pytest.mark.parametrize("objective", ["llada", "arm"])
def test_tiny_model_lowers_validation_loss_within_a_minute(objective: str, tmp_path: Path) -> None:
    cfg = compose(
        [f"objective={objective}", *TINY, "train.max_steps=80", "train.validate_at_start=true", f"run_dir={tmp_path}"]
    )
    started = time.perf_counter()
    result = train(cfg)
    elapsed = time.perf_counter() - started
    assert elapsed < 60, f"{objective} took {elapsed:.0f}s"
    assert result["status"] == "done" and result["steps"] == 80
    # a uniform guess over 4096 tokens scores ln 4096 = 8.32 nats; 80 steps must clearly beat the untrained model
    assert result["val_loss_initial"] > 7.5
    assert result["val_loss"] < result["val_loss_initial"] - 1.5
    assert result["val_loss_kind"] == ("elbo" if objective == "llada" else "nll")
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["val_loss"] == result["val_loss"]
    for key in (
        "objective",
        "model",
        "N_nonemb",
        "N_total",
        "tokens",
        "flops_6N",
        "flops_full",
        "val_bpb",
        "steps",
        "wall_time_s",
        "status",
    ):
        assert key in on_disk
    assert on_disk["tokens"] == 80 * 16 * 64
    assert on_disk["flops_6N"] == pytest.approx(6 * on_disk["N_nonemb"] * on_disk["tokens"])
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_a_data_constrained_run_records_its_unique_tokens_and_epochs(tmp_path: Path) -> None:
    u = 4 * 16 * 64  # 4 batches of unique data, read 5 times over in 20 steps
    cfg = compose(
        [*TINY, "train.max_steps=20", "train.val_batches=2", f"data.unique_tokens={u}", f"run_dir={tmp_path}"]
    )
    result = train(cfg)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["unique_tokens"] == u and on_disk["data_epochs"] == 5.0
    assert result["tokens"] == 20 * 16 * 64
    whole = train(compose([*TINY, "train.max_steps=2", "train.val_batches=2", f"run_dir={tmp_path / 'all'}"]))
    assert whole["unique_tokens"] > 100 * u  # without the key: every whole block of the training split
    assert whole["data_epochs"] == pytest.approx(2 * 16 * 64 / whole["unique_tokens"])


def test_finished_run_is_not_trained_again(tmp_path: Path, capsys) -> None:
    cfg = compose(["objective=arm", *TINY, "train.max_steps=4", f"run_dir={tmp_path}"])
    first = train(cfg)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    stamp = ckpt.stat().st_mtime_ns
    again = train(cfg)
    assert again == json.loads((tmp_path / "result.json").read_text()) and again["val_loss"] == first["val_loss"]
    assert ckpt.stat().st_mtime_ns == stamp
    assert "already done" in capsys.readouterr().out


def test_run_dir_of_another_config_is_refused_and_kept(tmp_path: Path) -> None:
    train(compose(["objective=arm", *TINY, "train.max_steps=2", f"run_dir={tmp_path}"]))
    before = (tmp_path / "result.json").read_text()
    with pytest.raises(ConfigError, match="different config.*train.lr"):
        train(compose(["objective=arm", *TINY, "train.max_steps=2", "train.lr=0.5", f"run_dir={tmp_path}"]))
    assert (tmp_path / "result.json").read_text() == before


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return ckpt["state_dict"]


def _llada_train(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "llada_lightning.cli", "train", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sigkill_mid_training_then_resume_gives_identical_weights(tmp_path: Path) -> None:
    args = [
        "objective=llada",
        "model=cpu-0.1m",
        "data.seq_len=64",
        "train.batch_size=8",
        "train.max_steps=60",
        "train.ckpt_every_n_steps=10",
        "train.val_every_n_steps=30",
        "train.accumulate_grad_batches=2",
        "objective.random_length_prob=0.2",
        "train.progress_bar=true",
        "train.log_every_n_steps=10",
    ]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    proc = _llada_train([*args, f"run_dir={reference}"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out

    proc = _llada_train([*args, f"run_dir={killed}"])
    ckpt = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline:  # wait for a mid-training checkpoint (step 20 or later), then SIGKILL
        if ckpt.is_file():
            step = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]
            if step >= 20:
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]
    assert 20 <= killed_at < 60 and not (killed / "result.json").exists()

    proc = _llada_train([*args, f"run_dir={killed}"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "Restoring states from the checkpoint" in out
    assert "step 10/60 " not in out and "step 60/60 " in out, out  # it resumed: the early steps were not redone
    ref, res = _weights(reference), _weights(killed)
    assert ref.keys() == res.keys()
    for name in ref:
        assert torch.equal(ref[name], res[name]), name
    a = json.loads((reference / "result.json").read_text())
    b = json.loads((killed / "result.json").read_text())
    assert a["val_loss"] == b["val_loss"] and a["steps"] == b["steps"] == 60
    # the random-length micro-batches (20% of them) are counted at their own length, the same after the kill
    assert a["tokens"] < 60 * 2 * 8 * 64
    for key in ("tokens", "flops_6N", "flops_full"):
        assert a[key] == b[key], key


def test_loss_guard_stops_on_nan_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    args = [
        "objective=arm",
        *TINY,
        "train.max_steps=40",
        "train.ckpt_every_n_steps=2",
        "train.lr=1e6",
        "train.grad_clip=0",
        "train.warmup_fraction=0",
        f"run_dir={tmp_path}",
    ]
    proc = _llada_train(args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 3, out
    assert "resume it with a lower train.lr" in out
    assert not (tmp_path / "result.json").exists()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_corrupt_checkpoint_is_a_clear_error_and_is_kept(tmp_path: Path) -> None:
    cfg = compose(["objective=arm", *TINY, "train.max_steps=2", f"run_dir={tmp_path}"])
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        train(cfg)
    assert ckpt.read_bytes() == b"not a checkpoint"


def test_start_banner_says_what_runs_and_a_resume_says_from_which_step(tmp_path: Path, capsys) -> None:
    cfg = compose(["objective=arm", *TINY, "train.max_steps=2", "train.val_batches=1", f"run_dir={tmp_path}"])
    train(cfg)
    out = capsys.readouterr().out
    banners = [line for line in out.splitlines() if line.startswith("llada train: ")]
    tokens = 2 * 16 * 64
    flops = flops_per_token(cfg.model, 64, cfg.train.flops_convention) * tokens
    assert banners == [
        f"llada train: arm cpu-0.4m (N={format_count(param_counts(cfg.model)[0])} non-emb), 2 steps x 1,024 tokens "
        f"= {format_count(tokens)} tokens, {format_flops(flops)} FLOPs ({cfg.train.flops_convention}) -> {tmp_path}"
    ]
    assert "resuming" not in out
    (tmp_path / "result.json").unlink()  # as if killed after the last checkpoint: the next run resumes it
    train(cfg)
    out = capsys.readouterr().out
    assert f"resuming at step 2 of 2 from {tmp_path / 'checkpoints' / 'last.ckpt'}\n" in out


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_a_run_dir_that_cannot_be_a_directory_is_one_line_naming_the_key(where: str, tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    target = blocker if where == "file" else blocker / "run"
    refused = r"^run_dir: .*(is a file, not a directory|which is a file); choose another run_dir"
    with pytest.raises(ConfigError, match=refused):
        train(compose([*TINY, "train.max_steps=2", f"run_dir={target}"]))
    assert blocker.read_text() == "mine"  # untouched
    with pytest.raises(ConfigError, match=r"^runs_root: "):
        train(compose([*TINY, "train.max_steps=2", f"runs_root={blocker}"]))


def test_a_combination_lightning_refuses_is_one_config_line(tmp_path: Path) -> None:
    # (train.strategy=fsdp on CPU, refused here before, now runs as FSDP2 over gloo: tests/training/test_fsdp.py)
    with pytest.raises(ConfigError, match=r"Lightning refuses train.strategy=auto accelerator=mps .*MPS") as info:
        train(compose([*TINY, "train.max_steps=2", "train.accelerator=mps", f"run_dir={tmp_path}"]))
    assert "\n" not in str(info.value)
