"""load_run: a trained run loads as the right model; every broken run directory is a one-line ConfigError."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from llada_lightning.cli import main
from llada_lightning.config.compose import load_run_config, to_yaml
from llada_lightning.config.errors import ConfigError
from llada_lightning.inference.decoders import AutoregressiveDecoder, DiffusionDecoder
from llada_lightning.inference.loading import load_run


def _copy(run_dir: Path, dest: Path, *, checkpoint: bool = True, tokenizer: bool = True) -> Path:
    dest.mkdir()
    shutil.copy(run_dir / "config.yaml", dest / "config.yaml")
    if checkpoint:
        (dest / "checkpoints").mkdir()
        shutil.copy(run_dir / "checkpoints" / "last.ckpt", dest / "checkpoints" / "last.ckpt")
    if tokenizer:
        shutil.copy(run_dir / "tokenizer.json", dest / "tokenizer.json")
    return dest


def test_llada_run_loads_the_checkpoint_weights(llada_run, llada_run_dir):
    ckpt = torch.load(llada_run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert llada_run.objective == "llada" and isinstance(llada_run.decoder, DiffusionDecoder)
    assert llada_run.model.causal is False and llada_run.decoder.mask_id == llada_run.mask_id
    assert llada_run.mask_id == llada_run.cfg.model.vocab_size  # reserved id outside the vocabulary
    assert llada_run.eos_id == llada_run.tokenizer.token_to_id("<|endoftext|>")
    assert not llada_run.model.training
    assert not any(p.requires_grad for p in llada_run.model.parameters())
    for key, value in llada_run.model.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][f"model.{key}"]), key


def test_arm_run_is_causal(arm_run):
    assert arm_run.objective == "arm" and isinstance(arm_run.decoder, AutoregressiveDecoder)
    assert arm_run.model.causal is True
    assert arm_run.max_length == 32


def test_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="no such directory; pass a run directory"):
        load_run(tmp_path / "nope")


def test_no_config(tmp_path):
    with pytest.raises(ConfigError, match="no config.yaml"):
        load_run(tmp_path)


def test_no_checkpoint(llada_run_dir, tmp_path):
    run = _copy(llada_run_dir, tmp_path / "run", checkpoint=False)
    with pytest.raises(ConfigError, match="no checkpoint at .*last.ckpt; train the run first"):
        load_run(run)


def test_no_tokenizer(llada_run_dir, tmp_path):
    run = _copy(llada_run_dir, tmp_path / "run", tokenizer=False)
    with pytest.raises(ConfigError, match="no tokenizer.json"):
        load_run(run)


def test_unreadable_checkpoint(llada_run_dir, tmp_path):
    run = _copy(llada_run_dir, tmp_path / "run")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        load_run(run)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"last.ckpt: empty file \(0 bytes\), not a checkpoint"),
        (b"\x80\x02", r"not a readable checkpoint \(EOFError\)"),
    ],
)
def test_empty_or_truncated_checkpoint_is_one_line_from_the_cli(llada_run_dir, tmp_path, capsys, content, message):
    run = _copy(llada_run_dir, tmp_path / "run")
    (run / "checkpoints" / "last.ckpt").write_bytes(content)  # b"\x80\x02": torch raises EOFError("")
    assert main(["sample", str(run), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llada: config error: ") and err.count("\n") == 1 and re.search(message, err), err


def _edit_config(run: Path, **model_fields) -> None:
    cfg = load_run_config(run / "config.yaml")
    for key, value in model_fields.items():
        setattr(cfg.model, key, value)
    (run / "config.yaml").write_text(to_yaml(cfg))


def test_config_that_does_not_match_the_checkpoint(llada_run_dir, tmp_path):
    run = _copy(llada_run_dir, tmp_path / "run")
    _edit_config(run, d_model=2 * load_run_config(run / "config.yaml").model.d_model)
    with pytest.raises(ConfigError, match=r"does not match .*model.d_model.*restore the config.yaml"):
        load_run(run)


def test_shape_mismatch_without_hyper_parameters(llada_run_dir, tmp_path):
    """A checkpoint without saved hyper-parameters: load_state_dict's error becomes a ConfigError."""
    run = _copy(llada_run_dir, tmp_path / "run")
    path = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    del ckpt["hyper_parameters"]
    torch.save(ckpt, path)
    _edit_config(run, n_layers=load_run_config(run / "config.yaml").model.n_layers + 1)
    with pytest.raises(ConfigError, match=r"does not match the model of .*config.yaml.*Missing key"):
        load_run(run)


def test_arm_checkpoint_under_a_llada_config_is_refused(arm_run_dir, llada_run_dir, tmp_path):
    """Same tensor shapes, different use (causal flag, objective): load_state_dict alone would accept it."""
    run = _copy(arm_run_dir, tmp_path / "run")
    shutil.copy(llada_run_dir / "config.yaml", run / "config.yaml")
    with pytest.raises(ConfigError, match=r"model.causal \(True != False\)"):
        load_run(run)


def test_cli_reports_a_broken_run_with_exit_2(tmp_path, capsys):
    assert main(["sample", str(tmp_path), "--prompt", "x"]) == 2
    assert "config error" in capsys.readouterr().err
