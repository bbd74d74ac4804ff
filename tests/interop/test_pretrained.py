"""load_pretrained: parity with transformers' Llama on checkpoints written in each format, and one clear error
for every inconsistent checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from interop_checkpoints import (
    bfloat16_rope_tables,
    llama_reference,
    reference_logits,
    smdm_tensors,
    write_llada,
)
from safetensors.torch import load_file, save_file

from llada_lightning.config.errors import ConfigError
from llada_lightning.interop import detect_format, load_pretrained

TOL = 1e-5


def _ids(vocab: int, mask: int | None = None) -> torch.Tensor:
    ids = torch.randint(0, vocab, (2, 19), generator=torch.Generator().manual_seed(3))
    if mask is not None:
        ids[:, 5:9] = mask  # masked positions, as LLaDA sees them
    return ids


@pytest.mark.parametrize(("kv_heads", "tied"), [(4, False), (2, True)])
def test_llama_checkpoint_matches_transformers(tmp_path: Path, kv_heads: int, tied: bool) -> None:
    ref = llama_reference(kv_heads=kv_heads, tied=tied)
    ref.save_pretrained(tmp_path)
    model, _, info = load_pretrained(tmp_path)
    ids = _ids(96)
    with torch.no_grad():
        got = model(ids)
    assert (info.format, info.objective, info.mask_id, info.causal) == ("llama", "arm", None, True)
    assert got.shape == (2, 19, 96)
    assert (got - reference_logits(ref, ids, bidirectional=False)).abs().max() <= TOL


def test_llama_checkpoint_loads_bidirectionally_when_told(tmp_path: Path) -> None:
    ref = llama_reference()
    ref.save_pretrained(tmp_path)
    model, _, info = load_pretrained(tmp_path, objective="llada", mask_id=95)
    ids = _ids(96, mask=95)
    with torch.no_grad():
        got = model(ids)
    assert (info.objective, info.mask_id, model.causal) == ("llada", 95, False)
    assert (got - reference_logits(ref, ids, bidirectional=True)).abs().max() <= TOL
    with pytest.raises(ConfigError, match="needs a mask token"):
        load_pretrained(tmp_path, objective="llada")


@pytest.mark.parametrize("block_type", ["llama", "sequential"])
@pytest.mark.parametrize(("kv_heads", "tied"), [(4, False), (2, True)])
def test_llada_checkpoint_matches_the_bidirectional_reference(
    tmp_path: Path, block_type: str, kv_heads: int, tied: bool
) -> None:
    ref = llama_reference(kv_heads=kv_heads, tied=tied, seed=1)
    write_llada(tmp_path, ref, block_type=block_type, mask_token_id=90)
    model, _, info = load_pretrained(tmp_path)
    ids = _ids(96, mask=90)
    with torch.no_grad():
        got = model(ids)
    assert (info.format, info.objective, info.mask_id, model.causal) == ("llada", "llada", 90, False)
    assert (got - reference_logits(ref, ids, bidirectional=True)).abs().max() <= TOL


def test_llada_logits_span_embedding_size_like_modeling_llada(tmp_path: Path) -> None:
    """embedding_size > vocab_size: modeling_llada.py's head (ff_out) has embedding_size rows; so do the logits."""
    ref = llama_reference(seed=2)
    tensors = write_llada(tmp_path, ref, extra_rows=32, mask_token_id=100)
    model, _, info = load_pretrained(tmp_path)
    ids = _ids(96)  # the reference embeds the first 96 rows only
    with torch.no_grad():
        got = model(ids)
        hidden = ref.model(ids, attention_mask=torch.zeros(2, 1, 19, 19)).last_hidden_state
    assert got.shape == (2, 19, 128) and info.mask_id == 100
    expected = hidden @ tensors["model.transformer.ff_out.weight"].T
    assert (got - expected).abs().max() <= TOL


def test_llada_mask_outside_the_vocabulary_keeps_vocab_size_logits(tmp_path: Path) -> None:
    """embedding_size = vocab_size + 1 = mask_token_id + 1 (SMDM's convention, what `llada export` writes): the
    mask row is an input only."""
    ref = llama_reference(seed=4)
    tensors = write_llada(tmp_path, ref, extra_rows=1, mask_token_id=96)
    model, _, info = load_pretrained(tmp_path)
    ids = _ids(96, mask=96)
    with torch.no_grad():
        got = model(ids)
    assert got.shape == (2, 19, 96) and info.mask_id == 96
    wte = tensors["model.transformer.wte.weight"]
    assert (got - reference_logits(ref, ids, bidirectional=True, embedding=wte)).abs().max() <= TOL


def test_sharded_llada_checkpoint_and_index(tmp_path: Path) -> None:
    ref = llama_reference(seed=5)
    write_llada(tmp_path, ref, shards=3)
    model, _, _ = load_pretrained(tmp_path)
    ids = _ids(96, mask=90)
    with torch.no_grad():
        assert (model(ids) - reference_logits(ref, ids, bidirectional=True)).abs().max() <= TOL
    (tmp_path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(ConfigError, match="model-00002-of-00003.safetensors, which is missing"):
        load_pretrained(tmp_path)


def test_tied_checkpoint_saved_with_a_copy_of_the_embedding(tmp_path: Path) -> None:
    """torch.save of a tied LLaDA writes ff_out too (the same tensor): accepted when equal, refused otherwise."""
    ref = llama_reference(seed=6, tied=True)
    tensors = write_llada(tmp_path, ref)
    wte = tensors["model.transformer.wte.weight"]
    (tmp_path / "model.safetensors").unlink()
    torch.save({**tensors, "model.transformer.ff_out.weight": wte.clone()}, tmp_path / "pytorch_model.bin")
    model, _, _ = load_pretrained(tmp_path)
    ids = _ids(96, mask=90)
    with torch.no_grad():
        assert (model(ids) - reference_logits(ref, ids, bidirectional=True)).abs().max() <= TOL
    torch.save({**tensors, "model.transformer.ff_out.weight": wte + 1}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="ties the head to the embedding, but 'model.transformer.ff_out.weight'"):
        load_pretrained(tmp_path)


@pytest.mark.parametrize(("mdm", "kv_heads"), [(True, 4), (True, 2), (False, 4)])
def test_smdm_checkpoint_matches_reference_with_bfloat16_rope_tables(tmp_path: Path, mdm: bool, kv_heads: int) -> None:
    ref = llama_reference(seed=7, kv_heads=kv_heads, theta=10000.0)
    file = tmp_path / ("mdm-tiny.safetensors" if mdm else "ar-tiny.safetensors")
    tensors = smdm_tensors(ref, mdm=mdm)
    save_file(tensors, str(file))
    model, tokenizer, info = load_pretrained(file, n_heads=4)
    bfloat16_rope_tables(ref)
    ids = _ids(96, mask=96 if mdm else None)
    with torch.no_grad():
        got = model(ids)
    assert detect_format(file) == "smdm" and tokenizer is None
    assert (info.objective, info.mask_id, model.causal) == (("llada", 96, False) if mdm else ("arm", None, True))
    wte = tensors["transformer.wte.weight"]
    assert (got - reference_logits(ref, ids, bidirectional=mdm, embedding=wte)).abs().max() <= TOL


def test_smdm_size_table_gives_the_heads(tmp_path: Path) -> None:
    """Diff_LLaMA_6M (6 layers, d 256, FFN 1024, 4 heads; SMDM lit_gpt/config.py): no n_heads needed."""
    ref = llama_reference(vocab=64, hidden=256, heads=4, ffn=1024, layers=6, theta=10000.0)
    file = tmp_path / "mdm-6M.safetensors"
    save_file(smdm_tensors(ref, mdm=True), str(file))
    model, _, info = load_pretrained(file, device="meta")
    assert (info.config.n_heads, info.config.n_layers, info.config.d_ff) == (4, 6, 1024)
    assert next(model.parameters()).device.type == "meta"
    ref = llama_reference(vocab=64, hidden=64, heads=4, ffn=80, layers=3)
    save_file(smdm_tensors(ref, mdm=True), str(file))
    with pytest.raises(ConfigError, match="number of heads is unknown; pass n_heads="):
        load_pretrained(file)


def test_dtype_and_meta_device(tmp_path: Path) -> None:
    ref = llama_reference(seed=8)
    write_llada(tmp_path, ref)
    model, _, info = load_pretrained(tmp_path, dtype=torch.bfloat16)
    assert info.dtype == torch.bfloat16 and {p.dtype for p in model.parameters()} == {torch.bfloat16}
    meta, _, _ = load_pretrained(tmp_path, device="meta")
    assert {p.device.type for p in meta.parameters()} == {"meta"}
    with pytest.raises(ConfigError, match="not a floating-point torch dtype"):
        load_pretrained(tmp_path, dtype="int8")


# -- inconsistent checkpoints: one ConfigError naming the tensor or field ------------------------------------


def _llada_dir(tmp_path: Path) -> Path:
    write_llada(tmp_path, llama_reference(seed=9))
    return tmp_path


def _edit_config(path: Path, **changes: object) -> None:
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(config | changes))


def _edit_tensors(path: Path, drop: str | None = None, **replace: torch.Tensor) -> None:
    tensors = load_file(str(path / "model.safetensors"))
    if drop is not None:
        del tensors[drop]
    save_file({**tensors, **replace}, str(path / "model.safetensors"))


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    path = _llada_dir(tmp_path)
    _edit_tensors(path, drop="model.transformer.blocks.1.up_proj.weight")
    with pytest.raises(ConfigError, match=r"tensor 'model\.transformer\.blocks\.1\.up_proj\.weight' is missing"):
        load_pretrained(path)


def test_shape_mismatch_is_named(tmp_path: Path) -> None:
    path = _llada_dir(tmp_path)
    _edit_tensors(path, **{"model.transformer.blocks.0.k_proj.weight": torch.zeros(8, 64)})
    with pytest.raises(ConfigError, match=r"'model\.transformer\.blocks\.0\.k_proj\.weight' has shape \[8, 64\]"):
        load_pretrained(path)


def test_unexpected_tensor_is_named(tmp_path: Path) -> None:
    path = _llada_dir(tmp_path)
    _edit_tensors(path, **{"model.transformer.blocks.0.q_proj.bias": torch.zeros(64)})
    with pytest.raises(ConfigError, match=r"unexpected tensor 'model\.transformer\.blocks\.0\.q_proj\.bias'"):
        load_pretrained(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"include_bias": True}, "include_bias=True is not supported"),
        ({"layer_norm_type": "default"}, "layer_norm_type='default' is not supported"),
        ({"block_type": "parallel"}, "block_type='parallel' is not supported"),
        ({"activation_type": "gelu"}, "activation_type='gelu' with block_type='llama'"),
        ({"scale_logits": True}, "scale_logits=True is not supported"),
        ({"mask_token_id": 500}, "mask_token_id=500 is not a row of the embedding"),
        ({"n_kv_heads": 3}, "n_kv_heads=3 must divide n_heads=4"),
    ],
)
def test_unsupported_or_inconsistent_config_is_named(tmp_path: Path, changes: dict, message: str) -> None:
    path = _llada_dir(tmp_path)
    _edit_config(path, **changes)
    with pytest.raises(ConfigError, match=message):
        load_pretrained(path)


def test_unknown_architecture_and_unknown_files(tmp_path: Path) -> None:
    path = _llada_dir(tmp_path / "a")
    _edit_config(path, model_type="gpt2", architectures=["GPT2LMHeadModel"])
    with pytest.raises(ConfigError, match=r"unknown architecture \(model_type='gpt2'"):
        load_pretrained(path)
    (path / "config.json").unlink()
    with pytest.raises(ConfigError, match="needs its config.json beside the weights"):
        load_pretrained(path)
    with pytest.raises(ConfigError, match="no such file or directory"):
        load_pretrained(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        load_pretrained(empty)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 16)
    with pytest.raises(ConfigError, match="not a readable safetensors file"):
        load_pretrained(broken)


def test_smdm_heads_from_a_lit_config_beside_the_weights(tmp_path: Path) -> None:
    ref = llama_reference(seed=10, theta=10000.0)
    tensors = smdm_tensors(ref, mdm=True)
    save_file(tensors, str(tmp_path / "mdm-toy.safetensors"))
    (tmp_path / "lit_config.json").write_text(json.dumps({"name": "toy", "n_layer": 2, "n_head": 4, "n_embd": 64}))
    model, _, info = load_pretrained(tmp_path / "mdm-toy.safetensors")
    assert info.config.n_heads == 4
    bfloat16_rope_tables(ref)
    ids = _ids(96, mask=96)
    with torch.no_grad():
        got = model(ids)
    expected = reference_logits(ref, ids, bidirectional=True, embedding=tensors["transformer.wte.weight"])
    assert (got - expected).abs().max() <= TOL


def test_llada_block_groups(tmp_path: Path) -> None:
    """block_group_size=2 nests the blocks as block_groups.{g}.{j} (modeling_llada.py LLaDABlockGroup)."""
    ref = llama_reference(seed=11, layers=4)
    tensors = write_llada(tmp_path, ref)
    grouped = {}
    for name, tensor in tensors.items():
        parts = name.split(".")
        if parts[2] == "blocks":
            i = int(parts[3])
            name = ".".join([*parts[:2], "block_groups", str(i // 2), str(i % 2), *parts[4:]])
        grouped[name] = tensor
    save_file(grouped, str(tmp_path / "model.safetensors"))
    _edit_config(tmp_path, block_group_size=2)
    model, _, _ = load_pretrained(tmp_path)
    ids = _ids(96, mask=90)
    with torch.no_grad():
        assert (model(ids) - reference_logits(ref, ids, bidirectional=True)).abs().max() <= TOL
    _edit_config(tmp_path, block_group_size=3)
    with pytest.raises(ConfigError, match="n_layers=4 is not divisible by block_group_size=3"):
        load_pretrained(tmp_path)


def test_llada_special_ids_come_from_config_and_generation_config(tmp_path: Path) -> None:
    """LLaDA-8B: eos_token_id in config.json, bos_token_id only in generation_config.json."""
    write_llada(tmp_path, llama_reference(seed=12))
    _, _, info = load_pretrained(tmp_path, device="meta")
    assert (info.eos_id, info.bos_id) == (2, None)
    (tmp_path / "generation_config.json").write_text(json.dumps({"bos_token_id": 7, "eos_token_id": 2}))
    _, _, info = load_pretrained(tmp_path, device="meta")
    assert (info.eos_id, info.bos_id) == (2, 7)
