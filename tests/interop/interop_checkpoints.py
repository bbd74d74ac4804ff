"""Checkpoints in each published layout, written by the tests from a random transformers Llama model.

The reference is `transformers.LlamaForCausalLM` itself (causal, or bidirectional with an all-zero additive 4-D
mask); its weights are renamed and fused into each format by the layout the format's code defines:
- LLaDA (GSAI-ML/LLaDA-8B-Base `modeling_llada.py`, `configuration_llada.py`): `model.transformer.wte`,
  `blocks.{i}.{attn_norm, q_proj, k_proj, v_proj, attn_out, ff_norm, ff_proj (gate), up_proj, ff_out}`, `ln_f`,
  `ff_out`; the sequential block fuses `att_proj = [q; k; v]` and `ff_proj = [up; gate]` (OLMo's SwiGLU chunk);
- SMDM (ML-GSAI/SMDM `lit_gpt/diffmodel.py`): `transformer.h.{i}.attn.attn` = per query group [its q heads; k; v],
  `mlp.swiglu.w1/w2/w3` = gate/up/down (xformers SwiGLU), `wte` with one more row than `lm_head` (MDM).
Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor
from transformers import LlamaConfig, LlamaForCausalLM


def llama_reference(
    *, seed: int = 0, vocab: int = 96, hidden: int = 64, heads: int = 4, kv_heads: int = 4, ffn: int = 80,
    layers: int = 2, tied: bool = False, theta: float = 500000.0,
) -> LlamaForCausalLM:  # fmt: skip
    """A small Llama with every weight random (norm weights too, so a swapped norm shows)."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_attention_heads=heads,
        num_key_value_heads=kv_heads, num_hidden_layers=layers, max_position_embeddings=128, rope_theta=theta,
        rms_norm_eps=1e-5, tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if "norm" in name else 0.15 * torch.randn_like(p))
    return model


def reference_logits(
    model: LlamaForCausalLM, ids: Tensor, *, bidirectional: bool, embedding: Tensor | None = None
) -> Tensor:
    """The reference's logits; `embedding` (rows beyond its vocabulary, e.g. a mask row) embeds `ids` instead."""
    inputs = (
        {"input_ids": ids} if embedding is None else {"inputs_embeds": torch.nn.functional.embedding(ids, embedding)}
    )
    with torch.no_grad():
        if bidirectional:  # an additive float mask of zeros: every query sees every key
            mask = torch.zeros(ids.shape[0], 1, ids.shape[1], ids.shape[1])
            return model(**inputs, attention_mask=mask).logits
        return model(**inputs).logits


def _weights(model: LlamaForCausalLM) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def llada_config(model: LlamaForCausalLM, *, block_type: str, mask_token_id: int, embedding_size: int) -> dict:
    """config.json with LLaDA-8B-Base's fields (its published config.json), for the reference's shapes."""
    c = model.config
    return {
        "activation_type": "silu" if block_type == "llama" else "swiglu", "alibi": False, "alibi_bias_max": 8.0,
        "architectures": ["LLaDAModelLM"], "attention_dropout": 0.0, "attention_layer_norm": False,
        "attention_layer_norm_with_affine": True, "bias_for_layer_norm": False, "block_group_size": 1,
        "block_type": block_type, "d_model": c.hidden_size, "embedding_dropout": 0.0, "embedding_size": embedding_size,
        "eos_token_id": 2, "flash_attention": False, "include_bias": False, "include_qkv_bias": False,
        "init_cutoff_factor": None, "init_device": "meta", "init_fn": "mitchell", "init_std": 0.02,
        "input_emb_norm": False, "layer_norm_type": "rms", "layer_norm_with_affine": True,
        "mask_token_id": mask_token_id, "max_sequence_length": 128,
        "mlp_hidden_size": c.intermediate_size * (1 if block_type == "llama" else 2), "mlp_ratio": 4,
        "model_type": "llada", "multi_query_attention": None, "n_heads": c.num_attention_heads,
        "n_kv_heads": c.num_key_value_heads, "n_layers": c.num_hidden_layers, "pad_token_id": 2,
        "precision": "amp_bf16", "residual_dropout": 0.0, "rms_norm_eps": c.rms_norm_eps, "rope": True,
        "rope_full_precision": True, "rope_theta": c.rope_parameters["rope_theta"], "scale_logits": False,
        "transformers_version": "4.46.3", "use_cache": False, "vocab_size": c.vocab_size,
        "weight_tying": c.tie_word_embeddings,
    }  # fmt: skip


def llada_tensors(model: LlamaForCausalLM, *, block_type: str, extra_rows: int = 0) -> dict[str, Tensor]:
    """The reference's weights under LLaDA's names; `extra_rows` pads wte (and an untied ff_out) with random rows
    beyond the vocabulary, as LLaDA's `embedding_size > vocab_size` does."""
    w, c, out = _weights(model), model.config, {}
    p = "model.transformer."
    wte = w["model.embed_tokens.weight"]
    out[p + "wte.weight"] = torch.cat((wte, 0.15 * torch.randn(extra_rows, wte.shape[1])))
    for i in range(c.num_hidden_layers):
        s, d = f"model.layers.{i}.", f"{p}blocks.{i}."
        out[d + "attn_norm.weight"] = w[s + "input_layernorm.weight"]
        out[d + "ff_norm.weight"] = w[s + "post_attention_layernorm.weight"]
        out[d + "attn_out.weight"] = w[s + "self_attn.o_proj.weight"]
        out[d + "ff_out.weight"] = w[s + "mlp.down_proj.weight"]
        q, k, v = (w[f"{s}self_attn.{x}_proj.weight"] for x in "qkv")
        gate, up = w[s + "mlp.gate_proj.weight"], w[s + "mlp.up_proj.weight"]
        if block_type == "llama":
            out |= {d + "q_proj.weight": q, d + "k_proj.weight": k, d + "v_proj.weight": v}
            out |= {d + "ff_proj.weight": gate, d + "up_proj.weight": up}
        else:
            out[d + "att_proj.weight"] = torch.cat((q, k, v))
            out[d + "ff_proj.weight"] = torch.cat((up, gate))
    out[p + "ln_f.weight"] = w["model.norm.weight"]
    if not c.tie_word_embeddings:
        head = w["lm_head.weight"]
        out[p + "ff_out.weight"] = torch.cat((head, 0.15 * torch.randn(extra_rows, head.shape[1])))
    return out


def write_llada(
    out: Path, model: LlamaForCausalLM, *, block_type: str = "llama", mask_token_id: int = 90, extra_rows: int = 0,
    shards: int = 1,
) -> dict[str, Tensor]:  # fmt: skip
    """A LLaDA Hugging Face directory (sharded with an index when `shards` > 1); returns the tensors written."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = llada_tensors(model, block_type=block_type, extra_rows=extra_rows)
    config = llada_config(
        model, block_type=block_type, mask_token_id=mask_token_id, embedding_size=model.config.vocab_size + extra_rows
    )
    (out / "config.json").write_text(json.dumps(config, indent=2))
    names = sorted(tensors)
    if shards == 1:
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
        return tensors
    weight_map = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n].contiguous() for n in names[i::shards]}
        save_file(part, str(out / file), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, file)
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index))
    return tensors


def smdm_tensors(model: LlamaForCausalLM, *, mdm: bool) -> dict[str, Tensor]:
    """The reference's weights as SMDM's lit_gpt state dict (MDM: one extra random embedding row, the mask)."""
    w, c, out = _weights(model), model.config, {}
    hs = c.hidden_size // c.num_attention_heads
    groups, per = c.num_key_value_heads, c.num_attention_heads // c.num_key_value_heads
    wte = w["model.embed_tokens.weight"]
    out["transformer.wte.weight"] = torch.cat((wte, 0.15 * torch.randn(int(mdm), wte.shape[1])))
    for i in range(c.num_hidden_layers):
        s, d = f"model.layers.{i}.", f"transformer.h.{i}."
        q, k, v = (w[f"{s}self_attn.{x}_proj.weight"] for x in "qkv")
        fused = []
        for g in range(groups):  # lit_gpt: qkv.view(B, T, n_query_groups, q_per_kv + 2, hs)
            fused += [q[g * per * hs : (g + 1) * per * hs], k[g * hs : (g + 1) * hs], v[g * hs : (g + 1) * hs]]
        out[d + "attn.attn.weight"] = torch.cat(fused)
        out[d + "attn.proj.weight"] = w[s + "self_attn.o_proj.weight"]
        out[d + "norm_1.weight"] = w[s + "input_layernorm.weight"]
        out[d + "norm_2.weight"] = w[s + "post_attention_layernorm.weight"]
        out[d + "mlp.swiglu.w1.weight"] = w[s + "mlp.gate_proj.weight"]
        out[d + "mlp.swiglu.w2.weight"] = w[s + "mlp.up_proj.weight"]
        out[d + "mlp.swiglu.w3.weight"] = w[s + "mlp.down_proj.weight"]
    out["transformer.ln_f.weight"] = w["model.norm.weight"]
    out["lm_head.weight"] = w["lm_head.weight"]
    return out


def bfloat16_rope_tables(model: LlamaForCausalLM) -> None:
    """Round the reference's RoPE cos/sin to bfloat16 (SMDM's `build_rope_cache(..., dtype=torch.bfloat16)`)."""
    rotary = model.model.rotary_emb
    original = rotary.forward

    def rounded(x: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        cos, sin = original(x, position_ids)
        return cos.bfloat16().to(cos.dtype), sin.bfloat16().to(sin.dtype)

    rotary.forward = rounded
