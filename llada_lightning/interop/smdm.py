"""SMDM's released checkpoints (Nie et al. 2024, "Scaling up Masked Diffusion Models on Text"; ML-GSAI/SMDM,
Hugging Face nieshen/SMDM: `mdm-<N>M-<C>e18*.safetensors` and `ar-<N>M-<C>e18*.safetensors`).

A release is one flat safetensors state dict of SMDM's lit_gpt model (`evaluate_diff.py`: `load_state_dict(
load_file(ckpt_path))`) with no config.json; the shape comes from the model name (`lit_gpt/config.py`,
`Diff_LLaMA_<N>M`), which the weights determine up to the number of heads (looked up in that table, or given):

    transformer.wte   [padded_vocab + 1, d] (MDM: the mask token is row padded_vocab) | [padded_vocab, d] (AR)
    transformer.h.{i}.norm_1 / norm_2                       -> layers.{i}.attn_norm / ffn_norm
    transformer.h.{i}.attn.attn   [(q_per_kv + 2) * groups * hs, d]: per query group, its q heads, then k, then v
    transformer.h.{i}.attn.proj                              -> attn.wo
    transformer.h.{i}.mlp.swiglu.w1 / w2 / w3  (xformers SwiGLU: silu(w1 x) * (w2 x), then w3) -> ffn.w1 / w3 / w2
    transformer.ln_f, lm_head     [padded_vocab, d]

RoPE is rotate-half over the whole head (rotary_percentage 1, base 10000, condense_ratio 1), applied by flash-attn's
fused kernel in float32 to cos/sin tables that SMDM builds in bfloat16 (`diffmodel.py build_rope_cache(...,
dtype=torch.bfloat16)`): imported models keep those rounded tables (`ModelConfig.rope_table_dtype`). RMSNorm eps
1e-5; attention scale 1/sqrt(head_size); MDM bidirectional, AR causal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import ModelConfig
from llada_lightning.interop.mapping import Piece
from llada_lightning.interop.weights import WeightFiles

PREFIX = "transformer."
QKV = "transformer.h.{i}.attn.attn.weight"
# SMDM lit_gpt/config.py Diff_LLaMA_* sizes: (n_layer, n_embd, intermediate_size) -> n_head (n_query_groups equal)
HEADS: dict[tuple[int, int, int], int] = {
    (6, 256, 1024): 4,
    (8, 384, 1536): 6,
    (8, 512, 2048): 8,
    (9, 576, 2304): 9,
    (10, 640, 2560): 10,
    (13, 640, 2560): 10,
    (16, 640, 1600): 8,
    (12, 768, 3072): 12,
    (15, 768, 3072): 12,
    (18, 768, 3072): 12,
    (14, 896, 3584): 14,
    (16, 896, 3584): 14,
    (18, 896, 3584): 14,
    (16, 1024, 4096): 16,
    (18, 1024, 4096): 16,
    (20, 1024, 4096): 16,
    (18, 1280, 5120): 10,
    (21, 1280, 5120): 10,
    (24, 1280, 5120): 10,
    (18, 1408, 5632): 11,
    (21, 1408, 5632): 11,
    (24, 1408, 5632): 11,
    (19, 1536, 6144): 12,
    (22, 1536, 6144): 12,
    (25, 1536, 6144): 12,
    (20, 1792, 7168): 14,
    (24, 1792, 7168): 14,
    (22, 2048, 8192): 16,
    (25, 2048, 8192): 16,
    (28, 2176, 8704): 17,
}
CONTEXT = 2048  # block_size of every Diff_LLaMA_* config
LIT_CONFIGS = ("lit_config.json", "config.json")  # lit_gpt's saved Config (lit_gpt/config.py fields)


def is_smdm(names: set[str]) -> bool:
    return QKV.format(i=0) in names and "lm_head.weight" in names


def objective_of(files: WeightFiles) -> str:
    """ "llada" when the embedding has one row more than the head (the mask token), "arm" when they are equal."""
    rows, head = files.shape(PREFIX + "wte.weight")[0], files.shape("lm_head.weight")[0]
    if rows == head + 1:
        return "llada"
    if rows == head:
        return "arm"
    raise ConfigError(
        f"{files.source}: transformer.wte has {rows} rows and lm_head {head}: neither an SMDM MDM (one more row, "
        "the mask token) nor an AR checkpoint"
    )


def lit_config_heads(home: Path) -> int | None:
    """`n_head` of a lit_gpt config saved beside the weights (lit_config.json, or a config.json with lit_gpt's
    fields n_layer/n_head/n_embd), if any."""
    for name in LIT_CONFIGS:
        file = home / name
        if file.is_file():
            try:
                data = json.loads(file.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{file}: not readable JSON ({exc}); restore the file") from exc
            if isinstance(data, dict) and isinstance(data.get("n_head"), int):
                return int(data["n_head"])
    return None


def is_lit_config(meta: dict[str, Any]) -> bool:
    return all(key in meta for key in ("n_layer", "n_head", "n_embd"))


def model_config(files: WeightFiles, *, n_heads: int | None, name: str) -> ModelConfig:
    """The ModelConfig of an SMDM checkpoint from its tensor shapes; the number of heads from the caller, a lit_gpt
    config beside the weights, or SMDM's size table."""
    layers = 0
    while QKV.format(i=layers) in files.names:
        layers += 1
    head_rows, d = files.shape("lm_head.weight")
    d_ff = files.shape(f"{PREFIX}h.0.mlp.swiglu.w1.weight")[0]
    home = files.source if files.source.is_dir() else files.source.parent
    heads = n_heads or lit_config_heads(home) or HEADS.get((layers, d, d_ff))
    if heads is None:
        raise ConfigError(
            f"{files.source}: {layers} layers of width {d} (FFN {d_ff}) is not a Diff_LLaMA_* size of SMDM's "
            "lit_gpt/config.py and no lit_config.json says its n_head, so its number of heads is unknown; pass n_heads="
        )
    qkv_rows = files.shape(QKV.format(i=0))[0]
    head_dim = d // heads
    groups = (qkv_rows // head_dim - heads) // 2  # rows = (heads + 2 groups) * head_size
    if groups < 1 or heads % groups or (heads + 2 * groups) * head_dim != qkv_rows:
        raise ConfigError(
            f"{files.source}: attn.attn has {qkv_rows} rows, not (n_head + 2 n_query_groups) * head_size for "
            f"n_head={heads}; pass the right n_heads="
        )
    return ModelConfig(
        name=name,
        n_layers=layers,
        n_heads=heads,
        n_kv_heads=groups,
        d_model=d,
        d_ff=d_ff,
        vocab_size=head_rows,
        max_seq_len=CONTEXT,
        rope_theta=10000.0,
        norm_eps=1e-5,
        tie_embeddings=False,
        mask_token_id=None,  # MDM: the mask token is row vocab_size; AR: that row is padded with zeros on load
        init="smdm",
        rope_table_dtype="bfloat16",
    )


def qkv_rows(cfg: ModelConfig) -> tuple[list[int], list[int], list[int]]:
    """Row indices of q, k and v in lit_gpt's fused attn.attn (per group: q_per_kv query heads, one k, one v)."""
    hs, groups = cfg.head_dim, cfg.n_kv_heads
    per = cfg.n_heads // groups
    q: list[int] = []
    k: list[int] = []
    v: list[int] = []
    for g in range(groups):
        base = g * (per + 2) * hs
        q += range(base, base + per * hs)
        k += range(base + per * hs, base + (per + 1) * hs)
        v += range(base + (per + 1) * hs, base + (per + 2) * hs)
    return q, k, v


def pieces(cfg: ModelConfig, objective: str) -> list[Piece]:
    """Backbone tensor <- SMDM tensor (module docstring); an AR embedding gets the reserved mask row as zeros."""
    q, k, v = qkv_rows(cfg)
    out = [Piece("embed.weight", PREFIX + "wte.weight", pad_rows=int(objective == "arm"))]
    for i in range(cfg.n_layers):
        src, dst = f"{PREFIX}h.{i}.", f"layers.{i}."
        out += [
            Piece(dst + "attn_norm.weight", src + "norm_1.weight"),
            Piece(dst + "attn.wq.weight", src + "attn.attn.weight", q),
            Piece(dst + "attn.wk.weight", src + "attn.attn.weight", k),
            Piece(dst + "attn.wv.weight", src + "attn.attn.weight", v),
            Piece(dst + "attn.wo.weight", src + "attn.proj.weight"),
            Piece(dst + "ffn_norm.weight", src + "norm_2.weight"),
            Piece(dst + "ffn.w1.weight", src + "mlp.swiglu.w1.weight"),
            Piece(dst + "ffn.w3.weight", src + "mlp.swiglu.w2.weight"),
            Piece(dst + "ffn.w2.weight", src + "mlp.swiglu.w3.weight"),
        ]
    out += [Piece("norm.weight", PREFIX + "ln_f.weight"), Piece("head.weight", "lm_head.weight")]
    return out
