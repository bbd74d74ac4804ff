"""LLaDA's Hugging Face format (GSAI-ML/LLaDA-8B-Base and -Instruct; remote code `modeling_llada.py` and
`configuration_llada.py`, an OLMo derivative), both ways.

config.json holds OLMo's `ModelConfig` fields (a field missing from the file takes that class's default, which is
not LLaDA-8B's: `block_type` sequential, `weight_tying` true, `rope` false, ...). Two block types compute a
pre-norm Llama block:

    llama:      blocks.{i}.attn_norm, q_proj, k_proj, v_proj, attn_out, ff_norm, ff_proj (the SwiGLU gate,
                activation_type silu), up_proj, ff_out (down)          [LLaDA-8B]
    sequential: blocks.{i}.att_proj = [q; k; v] fused by rows, ff_proj = [up; gate] by rows (OLMo's SwiGLU:
                `x, gate = x.chunk(2)`, activation_type swiglu), ff_out takes half of mlp_hidden_size

with `model.transformer.wte` (`embedding_size` rows), `model.transformer.ln_f` and `model.transformer.ff_out`
(the head, absent with `weight_tying`). RMSNorm upcasts to float32 and multiplies its weight after casting back,
RoPE is rotate-half over positions 0..T-1 in float32 (`rope_full_precision`), attention is bidirectional with scale
1/sqrt(head_dim) and GQA repeats each kv head `n_heads / n_kv_heads` times in place (`repeat_interleave`): exactly
`models.Transformer`. Fields the backbone cannot compute (biases, ALiBi, learned positions, qk-norm, LayerNorm,
scaled logits or embeddings, qkv clipping) are refused by name.

Logit width: `embedding_size` (as modeling_llada.py), except in the one layout where the mask token is not a
token of the vocabulary (`embedding_size == vocab_size + 1 == mask_token_id + 1`, SMDM's convention and the one
`llada export` writes for this package's runs): the head then keeps its first `vocab_size` rows, so a run exported
and imported again is the same model, bit for bit.
"""

from __future__ import annotations

from typing import Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import ModelConfig
from llada_lightning.interop.mapping import Piece

ARCHITECTURE = "LLaDAModelLM"
MASK_TOKEN_ID = 126336  # LLaDA-8B's <|mdm_mask|> (config.json mask_token_id)
PREFIX = "model.transformer."
# OLMo ModelConfig defaults (configuration_llada.py), used for fields a config.json leaves out
DEFAULTS: dict[str, Any] = {
    "n_kv_heads": None,
    "mlp_ratio": 4,
    "mlp_hidden_size": None,
    "activation_type": "swiglu",
    "block_type": "sequential",
    "block_group_size": 1,
    "alibi": False,
    "rope": False,
    "rope_full_precision": True,
    "multi_query_attention": None,
    "attention_layer_norm": False,
    "input_emb_norm": False,
    "layer_norm_type": "default",
    "layer_norm_with_affine": True,
    "rms_norm_eps": 1e-5,
    "max_sequence_length": 1024,
    "rope_theta": 10000.0,
    "include_qkv_bias": False,
    "include_bias": False,
    "bias_for_layer_norm": None,
    "scale_logits": False,
    "vocab_size": 50257,
    "embedding_size": 50304,
    "weight_tying": True,
    "mask_token_id": 50256,
    "clip_qkv": None,
}
# (field, value the backbone needs, why)
_REQUIRED = (
    ("alibi", False, "ALiBi positions"),
    ("rope", True, "RoPE (learned positional embeddings otherwise)"),
    ("attention_layer_norm", False, "qk layer norms"),
    ("include_bias", False, "linear biases"),
    ("include_qkv_bias", False, "q/k/v biases"),
    ("input_emb_norm", False, "embeddings scaled by sqrt(d_model)"),
    ("scale_logits", False, "logits scaled by 1/sqrt(d_model)"),
    ("clip_qkv", None, "clipped q/k/v"),
    ("layer_norm_type", "rms", "its norm (the backbone uses RMSNorm)"),
)
BLOCK_ACTIVATIONS = {"llama": "silu", "sequential": "swiglu"}


def is_llada(meta: dict[str, Any]) -> bool:
    return meta.get("model_type") == "llada" or ARCHITECTURE in (meta.get("architectures") or [])


def field(meta: dict[str, Any], name: str) -> Any:
    return meta.get(name, DEFAULTS.get(name))


def n_kv_heads(meta: dict[str, Any]) -> int:
    """configuration_llada.py `effective_n_kv_heads`: n_kv_heads, else 1 with multi_query_attention, else n_heads."""
    heads, mqa = int(meta["n_heads"]), field(meta, "multi_query_attention")
    kv = field(meta, "n_kv_heads")
    if kv is None:
        return 1 if mqa is True else heads
    if mqa is not None and int(kv) != (1 if mqa else heads):
        raise ConfigError(f"config.json: n_kv_heads={kv} contradicts multi_query_attention={mqa}")
    return int(kv)


def hidden_size(meta: dict[str, Any]) -> int:
    """The width of ff_proj (modeling_llada.py LLaDABlock: mlp_hidden_size, else mlp_ratio * d_model)."""
    hidden = field(meta, "mlp_hidden_size")
    return int(hidden) if hidden is not None else int(field(meta, "mlp_ratio")) * int(meta["d_model"])


def drops_mask_column(meta: dict[str, Any]) -> bool:
    """The layout whose mask token is not in the vocabulary (module docstring): the head keeps vocab_size rows."""
    vocab, rows, mask = field(meta, "vocab_size"), field(meta, "embedding_size"), field(meta, "mask_token_id")
    return rows is not None and mask is not None and int(rows) == int(vocab) + 1 == int(mask) + 1


def model_config(meta: dict[str, Any], *, name: str) -> ModelConfig:
    """The ModelConfig of a LLaDA config.json; ConfigError naming the first field the backbone cannot honour."""
    for key, want, what in _REQUIRED:
        if field(meta, key) != want:
            raise ConfigError(f"config.json: {key}={field(meta, key)!r} is not supported ({what}); need {want!r}")
    if field(meta, "bias_for_layer_norm"):
        raise ConfigError("config.json: bias_for_layer_norm=true is not supported (the backbone's norms have no bias)")
    block = field(meta, "block_type")
    if block not in BLOCK_ACTIVATIONS:
        raise ConfigError(f"config.json: block_type={block!r} is not supported; need one of {list(BLOCK_ACTIVATIONS)}")
    activation = field(meta, "activation_type")
    if activation != BLOCK_ACTIVATIONS[block]:
        raise ConfigError(
            f"config.json: activation_type={activation!r} with block_type={block!r} is not a SwiGLU block; "
            f"need {BLOCK_ACTIVATIONS[block]!r}"
        )
    try:
        d, heads = int(meta["d_model"]), int(meta["n_heads"])
        n_layers = int(meta["n_layers"])
    except KeyError as exc:
        raise ConfigError(f"config.json: field {exc.args[0]!r} is missing for a LLaDA model") from exc
    group = field(meta, "block_group_size") or 1
    if n_layers % int(group):
        raise ConfigError(f"config.json: n_layers={n_layers} is not divisible by block_group_size={group}")
    hidden = hidden_size(meta)
    vocab = int(field(meta, "vocab_size"))
    rows = int(field(meta, "embedding_size") or vocab)
    mask = field(meta, "mask_token_id")
    if rows < vocab:
        raise ConfigError(f"config.json: embedding_size={rows} < vocab_size={vocab}; the embedding must hold the vocab")
    if drops_mask_column(meta):
        vocab_out, mask_token_id = vocab, None  # ModelConfig's reserved row at index vocab_size
    else:
        if mask is None or not 0 <= int(mask) < rows:
            raise ConfigError(f"config.json: mask_token_id={mask!r} is not a row of the embedding ({rows} rows)")
        vocab_out, mask_token_id = rows, int(mask)
    return ModelConfig(
        name=name,
        n_layers=n_layers,
        n_heads=heads,
        n_kv_heads=n_kv_heads(meta),
        d_model=d,
        d_ff=hidden if block == "llama" else hidden // 2,
        vocab_size=vocab_out,
        max_seq_len=int(field(meta, "max_sequence_length")),
        rope_theta=float(field(meta, "rope_theta")),
        norm_eps=float(field(meta, "rms_norm_eps")),
        tie_embeddings=bool(field(meta, "weight_tying")),
        mask_token_id=mask_token_id,
        init="llada",
    )


def pieces(meta: dict[str, Any], cfg: ModelConfig) -> list[Piece]:
    """Backbone tensor <- LLaDA tensor (module docstring)."""
    affine = bool(field(meta, "layer_norm_with_affine"))
    sequential = field(meta, "block_type") == "sequential"
    q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim

    def norm(target: str, source: str) -> Piece:
        return Piece(target, PREFIX + source if affine else None)

    group = int(field(meta, "block_group_size") or 1)
    out = [Piece("embed.weight", PREFIX + "wte.weight")]
    for i in range(cfg.n_layers):
        # block_group_size > 1 nests the blocks (modeling_llada.py LLaDABlockGroup): block_groups.{g}.{j}
        block = f"blocks.{i}" if group == 1 else f"block_groups.{i // group}.{i % group}"
        src, dst = f"{PREFIX}{block}.", f"layers.{i}."
        out.append(norm(dst + "attn_norm.weight", f"{block}.attn_norm.weight"))
        if sequential:  # att_proj rows: q, k, v (modeling_llada.py `fused_dims`)
            out += [
                Piece(dst + "attn.wq.weight", src + "att_proj.weight", (0, q)),
                Piece(dst + "attn.wk.weight", src + "att_proj.weight", (q, q + kv)),
                Piece(dst + "attn.wv.weight", src + "att_proj.weight", (q + kv, q + 2 * kv)),
            ]
        else:
            out += [Piece(f"{dst}attn.w{p}.weight", f"{src}{p}_proj.weight") for p in "qkv"]
        out += [
            Piece(dst + "attn.wo.weight", src + "attn_out.weight"),
            norm(dst + "ffn_norm.weight", f"{block}.ff_norm.weight"),
        ]
        if sequential:  # ff_proj rows: up, then gate (OLMo SwiGLU: `x, gate = x.chunk(2)`; silu(gate) * x)
            out += [
                Piece(dst + "ffn.w3.weight", src + "ff_proj.weight", (0, cfg.d_ff)),
                Piece(dst + "ffn.w1.weight", src + "ff_proj.weight", (cfg.d_ff, 2 * cfg.d_ff)),
            ]
        else:
            out += [
                Piece(dst + "ffn.w1.weight", src + "ff_proj.weight"),
                Piece(dst + "ffn.w3.weight", src + "up_proj.weight"),
            ]
        out.append(Piece(dst + "ffn.w2.weight", src + "ff_out.weight"))
    out.append(norm("norm.weight", "ln_f.weight"))
    if not cfg.tie_embeddings:
        rows = (0, cfg.vocab_size) if drops_mask_column(meta) else None
        out.append(Piece("head.weight", PREFIX + "ff_out.weight", rows))
    return out


def export_config(cfg: ModelConfig, *, eos_id: int | None, init: str, precision: str) -> dict[str, Any]:
    """config.json in LLaDA-8B's layout (the same fields), for a backbone `cfg`.

    The head's `vocab_size` columns are the vocabulary; a model whose mask token lies outside it (this package's
    default) gets `embedding_size = vocab_size + 1` and `mask_token_id = vocab_size` (its head is padded by one zero
    row on export, dropped again on import). `auto_map` names LLaDA-8B-Base's remote code on the Hub, which
    transformers fetches with `trust_remote_code=True` (LLaDA's code ships with the model, not with transformers).
    """
    return {
        "activation_type": "silu",
        "alibi": False,
        "alibi_bias_max": 8.0,
        "architectures": [ARCHITECTURE],
        "attention_dropout": 0.0,
        "attention_layer_norm": False,
        "attention_layer_norm_with_affine": True,
        "auto_map": {
            "AutoConfig": "GSAI-ML/LLaDA-8B-Base--configuration_llada.LLaDAConfig",
            "AutoModelForCausalLM": "GSAI-ML/LLaDA-8B-Base--modeling_llada.LLaDAModelLM",
            "AutoModel": "GSAI-ML/LLaDA-8B-Base--modeling_llada.LLaDAModelLM",
        },
        "bias_for_layer_norm": False,
        "block_group_size": 1,
        "block_type": "llama",
        "d_model": cfg.d_model,
        "embedding_dropout": 0.0,
        "embedding_size": cfg.embedding_rows,
        "eos_token_id": eos_id,
        "flash_attention": False,
        "include_bias": False,
        "include_qkv_bias": False,
        "init_cutoff_factor": None,
        "init_device": "meta",
        "init_fn": "mitchell" if init == "llada" else "normal",
        "init_std": 0.02,
        "input_emb_norm": False,
        "layer_norm_type": "rms",
        "layer_norm_with_affine": True,
        "mask_token_id": cfg.mask_id,
        "max_sequence_length": cfg.max_seq_len,
        "mlp_hidden_size": cfg.d_ff,
        "mlp_ratio": 4,
        "model_type": "llada",
        "multi_query_attention": None,
        "n_heads": cfg.n_heads,
        "n_kv_heads": cfg.n_kv_heads,
        "n_layers": cfg.n_layers,
        "pad_token_id": eos_id,
        "precision": precision,
        "residual_dropout": 0.0,
        "rms_norm_eps": cfg.norm_eps,
        "rope": True,
        "rope_full_precision": True,
        "rope_theta": cfg.rope_theta,
        "scale_logits": False,
        "transformers_version": "4.46.3",  # the version LLaDA's remote code runs under (its config.json's)
        "use_cache": False,
        "vocab_size": cfg.vocab_size,
        "weight_tying": cfg.tie_embeddings,
    }
