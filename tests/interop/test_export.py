"""llada export: LLaDA runs round-trip through load_pretrained bit for bit in LLaDA's own layout; ARM runs load in
transformers with the run's logits; bad requests leave existing results alone."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from llada_lightning.cli import main
from llada_lightning.config.errors import ConfigError
from llada_lightning.inference.loading import load_run
from llada_lightning.interop import export_run, load_pretrained

# GSAI-ML/LLaDA-8B-Base config.json (and -Instruct's: identical), its published fields
LLADA_8B_FIELDS = {
    "activation_type", "alibi", "alibi_bias_max", "architectures", "attention_dropout", "attention_layer_norm",
    "attention_layer_norm_with_affine", "auto_map", "bias_for_layer_norm", "block_group_size", "block_type",
    "d_model", "embedding_dropout", "embedding_size", "eos_token_id", "flash_attention", "include_bias",
    "include_qkv_bias", "init_cutoff_factor", "init_device", "init_fn", "init_std", "input_emb_norm",
    "layer_norm_type", "layer_norm_with_affine", "mask_token_id", "max_sequence_length", "mlp_hidden_size",
    "mlp_ratio", "model_type", "multi_query_attention", "n_heads", "n_kv_heads", "n_layers", "pad_token_id",
    "precision", "residual_dropout", "rms_norm_eps", "rope", "rope_full_precision", "rope_theta", "scale_logits",
    "transformers_version", "use_cache", "vocab_size", "weight_tying",
}  # fmt: skip
# LLaDA-8B's per-block tensors (model.safetensors.index.json), and the three outside the blocks
LLADA_BLOCK_TENSORS = {
    "attn_norm", "q_proj", "k_proj", "v_proj", "attn_out", "ff_norm", "ff_proj", "up_proj", "ff_out",
}  # fmt: skip


def _names(out: Path) -> set[str]:
    with safe_open(str(out / "model.safetensors"), framework="pt") as fh:
        assert fh.metadata() == {"format": "pt"}  # transformers refuses safetensors without it
        return set(fh.keys())


def test_llada_run_round_trips_bit_for_bit_in_llada_layout(llada_run_dir: Path, tmp_path: Path) -> None:
    out = export_run(llada_run_dir, tmp_path / "hf")
    run = load_run(llada_run_dir)
    model, tokenizer, info = load_pretrained(out)
    before, after = run.model.state_dict(), model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert (info.format, info.objective, info.mask_id, model.causal) == ("llada", "llada", run.mask_id, False)
    ids = torch.randint(0, run.cfg.model.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    ids[:, 3:10] = run.mask_id
    with torch.no_grad():
        assert torch.equal(model(ids), run.model(ids))
    assert tokenizer is not None and tokenizer.encode("ROMEO: hi").ids == run.encode("ROMEO: hi")

    config = json.loads((out / "config.json").read_text())
    assert set(config) == LLADA_8B_FIELDS
    m = run.cfg.model
    assert (config["d_model"], config["n_layers"], config["n_heads"], config["mlp_hidden_size"]) == (
        m.d_model, m.n_layers, m.n_heads, m.d_ff,
    )  # fmt: skip
    assert (config["vocab_size"], config["embedding_size"], config["mask_token_id"]) == (
        m.vocab_size, m.vocab_size + 1, m.vocab_size,
    )  # fmt: skip
    blocks = {f"model.transformer.blocks.{i}.{t}.weight" for i in range(m.n_layers) for t in LLADA_BLOCK_TENSORS}
    outside = {f"model.transformer.{t}.weight" for t in ("wte", "ln_f", "ff_out")}
    assert _names(out) == blocks | outside


def test_arm_run_loads_in_transformers_with_the_runs_logits(arm_run_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export_run(arm_run_dir, tmp_path / "hf")
    run = load_run(arm_run_dir)
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.randint(0, run.cfg.model.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (hf(ids).logits - run.model(ids)).abs().max() <= 1e-5
    assert AutoTokenizer.from_pretrained(out)("ROMEO: hi").input_ids == run.encode("ROMEO: hi")
    model, _, info = load_pretrained(out)
    assert (info.format, info.objective) == ("llama", "arm")
    with torch.no_grad():
        assert torch.equal(model(ids), run.model(ids))


def test_model_card_holds_the_runs_numbers(llada_run_dir: Path, tmp_path: Path) -> None:
    out = export_run(llada_run_dir, tmp_path / "hf")
    card = (out / "README.md").read_text()
    result = json.loads((llada_run_dir / "result.json").read_text())
    for value in (
        f"{result['val_loss']:.4f}",
        f"{result['flops_6N']:.3g}",
        str(result["tokens"]),
        "| objective | llada |",
    ):
        assert value in card
    assert "Nie et al. 2025" in card


def test_bad_requests_leave_results_alone(llada_run_dir: Path, arm_run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        export_run(llada_run_dir, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(ConfigError, match="export it with --format llama"):
        export_run(arm_run_dir, tmp_path / "x", format="llada")
    with pytest.raises(ConfigError, match="export it with --format llada"):
        export_run(llada_run_dir, tmp_path / "x", format="llama")
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))
    export_run(llada_run_dir, out, overwrite=True)
    assert (out / "config.json").is_file() and not (out / "keep.txt").exists()


def test_cli_export_follows_umask_and_fails_in_one_line(
    llada_run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = os.umask(0o027)
    try:
        assert main(["export", str(llada_run_dir), str(tmp_path / "hf"), "--dtype", "bfloat16"]) == 0
    finally:
        os.umask(old)
    out = tmp_path / "hf"
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o640}
    _, _, info = load_pretrained(out)
    assert info.dtype == torch.bfloat16
    assert main(["export", str(llada_run_dir), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists and is not empty" in err[0]
