"""transformers' Llama format (`LlamaForCausalLM`: config.json + safetensors), both ways.

The backbone is the Llama architecture (pre-norm RMSNorm, rotate-half RoPE, SwiGLU, no biases; transformers
`models/llama/modeling_llama.py`), so the weights map one to one:

    model.embed_tokens -> embed            model.layers.{i}.input_layernorm -> layers.{i}.attn_norm
    self_attn.{q,k,v,o}_proj -> attn.w{q,k,v,o}   post_attention_layernorm -> ffn_norm
    mlp.gate_proj / up_proj / down_proj -> ffn.w1 / w3 / w2   model.norm -> norm     lm_head -> head

Anything the backbone cannot compute exactly (biases, rope scaling, a head_dim other than hidden/heads, an
activation other than SiLU) is refused with the config field's name. Loaded as an ARM (causal) by default;
`objective="llada"` runs the same weights bidirectionally with a mask id from config.json, the tokenizer or the
caller. An ARM's embedding gets one zero row for the reserved mask id (`ModelConfig.mask_token_id=None`, which no
ARM reads), and export drops that row again, so the head keeps exactly `vocab_size` columns.
"""

from __future__ import annotations

from typing import Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import ModelConfig
from llada_lightning.interop.mapping import Piece

ARCHITECTURE = "LlamaForCausalLM"
# old transformers saved the RoPE table as a buffer; it is recomputed here from rope_theta
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def is_llama(meta: dict[str, Any]) -> bool:
    return meta.get("model_type") == "llama" or ARCHITECTURE in (meta.get("architectures") or [])


def _rope_theta(meta: dict[str, Any]) -> float:
    """rope_theta (transformers 4.x) or rope_parameters["rope_theta"] (5.x); refuses any rope scaling."""
    params = meta.get("rope_parameters") or {}
    scaling = meta.get("rope_scaling") or {}
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type != "default":
        raise ConfigError(f"config.json: rope_type={rope_type!r} (rope scaling) is not supported; only plain RoPE")
    return float(params.get("rope_theta", meta.get("rope_theta", 10000.0)))


def model_config(meta: dict[str, Any], *, mask_token_id: int | None, name: str) -> ModelConfig:
    """The ModelConfig of a Llama config.json (ConfigError naming the field the backbone cannot honour)."""
    try:
        d, heads = int(meta["hidden_size"]), int(meta["num_attention_heads"])
        cfg = ModelConfig(
            name=name,
            n_layers=int(meta["num_hidden_layers"]),
            n_heads=heads,
            n_kv_heads=int(meta.get("num_key_value_heads") or heads),
            d_model=d,
            d_ff=int(meta["intermediate_size"]),
            vocab_size=int(meta["vocab_size"]),
            max_seq_len=int(meta.get("max_position_embeddings", 2048)),
            rope_theta=_rope_theta(meta),
            norm_eps=float(meta.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(meta.get("tie_word_embeddings", False)),
            mask_token_id=mask_token_id,
        )
    except KeyError as exc:
        raise ConfigError(f"config.json: field {exc.args[0]!r} is missing for a Llama model") from exc
    if meta.get("head_dim") not in (None, d // heads):
        raise ConfigError(f"config.json: head_dim={meta['head_dim']} != hidden_size/num_attention_heads; unsupported")
    for field in ("attention_bias", "mlp_bias"):
        if meta.get(field):
            raise ConfigError(f"config.json: {field}=true is not supported (the backbone has no biases)")
    if meta.get("hidden_act", "silu") != "silu":
        raise ConfigError(f"config.json: hidden_act={meta['hidden_act']!r} is not supported (SwiGLU uses silu)")
    return cfg


def pieces(cfg: ModelConfig) -> list[Piece]:
    """Backbone tensor <- Llama tensor (module docstring)."""
    out = [Piece("embed.weight", "model.embed_tokens.weight", pad_rows=cfg.embedding_rows - cfg.vocab_size)]
    for i in range(cfg.n_layers):
        src, dst = f"model.layers.{i}.", f"layers.{i}."
        out += [
            Piece(dst + "attn_norm.weight", src + "input_layernorm.weight"),
            *(Piece(f"{dst}attn.w{p}.weight", f"{src}self_attn.{p}_proj.weight") for p in "qkvo"),
            Piece(dst + "ffn_norm.weight", src + "post_attention_layernorm.weight"),
            Piece(dst + "ffn.w1.weight", src + "mlp.gate_proj.weight"),
            Piece(dst + "ffn.w3.weight", src + "mlp.up_proj.weight"),
            Piece(dst + "ffn.w2.weight", src + "mlp.down_proj.weight"),
        ]
    out.append(Piece("norm.weight", "model.norm.weight"))
    if not cfg.tie_embeddings:
        out.append(Piece("head.weight", "lm_head.weight"))
    return out


def ignored(names: set[str]) -> set[str]:
    return {n for n in names if n.endswith(IGNORED_SUFFIXES)}


def export_config(cfg: ModelConfig, *, bos_id: int | None, eos_id: int | None, dtype: str) -> dict[str, Any]:
    """A transformers LlamaConfig (config.json) for `cfg`; the head's `vocab_size` columns are the vocabulary."""
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "llama",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": eos_id,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "hidden_size": cfg.d_model,
        "initializer_range": 0.02,
        "intermediate_size": cfg.d_ff,
        "max_position_embeddings": cfg.max_seq_len,
        "mlp_bias": False,
        "num_attention_heads": cfg.n_heads,
        "num_hidden_layers": cfg.n_layers,
        "num_key_value_heads": cfg.n_kv_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": cfg.norm_eps,
        "rope_scaling": None,
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tie_embeddings,
        "torch_dtype": dtype,
        "use_cache": True,
        "vocab_size": cfg.vocab_size,
    }
