"""The shared backbone: a LLaMA-style decoder whose only LLaDA/ARM difference is `causal` (the objective's).

Pre-norm blocks `x + attn(norm(x))`, `x + ffn(norm(x))`; RoPE; SwiGLU; no biases; optional GQA and tied
embeddings; a final RMSNorm and a linear head with `vocab_size` outputs. The embedding has
`config.embedding_rows` rows so the reserved mask id (`config.mask_id`) is a valid input.

RoPE positions are always 0..T-1, whatever the padding: a left-padded prompt starts at the position
of its first padding token. Padding keys are hidden by `attention_mask`, so padded rows only shift
positions, which RoPE's relative encoding makes harmless for attention scores.

Inference may pass a `KVCache` (`new_kv_cache()`): the forward then takes only the new tokens, placed after
the cached ones or in the cache's window (RoPE positions continue from `cache.start` unless `positions` says
otherwise; `positions` may hold one row per sequence).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from llada_lightning.config.schema import ModelConfig
from llada_lightning.models.attention import (
    KVCache,
    SelfAttention,
    attention_mask_4d,
    cached_attention_mask,
    check_backend,
)
from llada_lightning.models.initialization import check_init, init_weights
from llada_lightning.models.layers import ROPE_TABLE_DTYPES, RMSNorm, SwiGLU, rope_cos_sin


class Block(nn.Module):
    def __init__(self, config: ModelConfig, backend: str, causal: bool) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = SelfAttention(config, backend, causal)
        self.ffn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.ffn = SwiGLU(config.d_model, config.d_ff)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None, cache: KVCache | None = None, layer: int = 0
    ) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache, layer)
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    """Token ids [B, T] -> logits [B, T, vocab_size]; bidirectional (LLaDA) or `causal` (ARM).

    Prefer `build_model`, which skips torch's default initialisation (so weights depend only on the
    seed and `init_weights`), takes the attention from the run's objective and can build on the meta device.
    """

    def __init__(self, config: ModelConfig, backend: str = "sdpa", causal: bool = False) -> None:
        super().__init__()
        _validate(config)
        self.config = config
        self.causal = bool(causal)
        self.backend = check_backend(backend)
        self.embed = nn.Embedding(config.embedding_rows, config.d_model)
        self.layers = nn.ModuleList(Block(config, backend, self.causal) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.head = None if config.tie_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.init_weights()

    @property
    def head_weight(self) -> Tensor:
        """The [vocab_size, d] output matrix; tied: a view of the embedding's first vocab_size rows."""
        if self.head is None:
            return self.embed.weight[: self.config.vocab_size]
        return self.head.weight

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialise every weight with the scheme `config.init` (`models/initialization.py`): `gpt2`
        (default), `smdm` or `llada`; RMSNorm weights 1."""
        init_weights(self, self.config)

    def new_kv_cache(self) -> KVCache:
        """An empty `KVCache` for this model (inference only)."""
        return KVCache(self.config.n_layers)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        cache: KVCache | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """`attention_mask` [B, T]: 1/True = real token, 0 = padding key (hidden from every other query).

        `cache`: the tokens of `input_ids` come after the cached ones and attend to them (and, unless the cache
        is frozen, are appended to it), or, in a cache window, are the window's tokens (see `KVCache`);
        `attention_mask` then covers the new tokens only. `positions` [T] or [B, T] (one row per sequence): RoPE
        positions of the new tokens (default `cache.start + arange(T)`, or `arange(T)` without a cache).
        """
        t = input_ids.shape[1]
        x = self.embed(input_ids)
        head_dim, theta, table = self.config.head_dim, self.config.rope_theta, self.config.rope_table_dtype
        first = 0 if cache is None else cache.start
        if positions is not None:
            cos, sin = rope_cos_sin(int(positions.max()) + 1, head_dim, theta, x.device, table)
            cos, sin = cos[positions], sin[positions]
        else:
            cos, sin = rope_cos_sin(first + t, head_dim, theta, x.device, table)
            cos, sin = cos[first:], sin[first:]
        if cache is None:
            mask = None if attention_mask is None else attention_mask_4d(attention_mask, self.causal)
        else:
            mask = self._cached_mask(cache, attention_mask, input_ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, cache, i)
        return nn.functional.linear(self.norm(x), self.head_weight)

    def _cached_mask(self, cache: KVCache, attention_mask: Tensor | None, input_ids: Tensor) -> Tensor | None:
        """Key padding of cached + new tokens -> [B, 1, T, S], or None when nothing needs hiding."""
        b, t = input_ids.shape
        first = cache.start
        new = torch.ones(b, t, dtype=torch.bool, device=input_ids.device)
        if attention_mask is not None:
            new = attention_mask.bool()
        keys = cache.key_padding_mask(new)
        # no mask needed: every key is real and, when causal, the single new query is the last key
        if bool(keys.all()) and (not self.causal or (t == 1 and first + 1 == keys.shape[1])):
            return None
        return cached_attention_mask(keys, t, self.causal, first)


def build_model(
    config: ModelConfig | Any,
    backend: str | None = None,
    device: str | torch.device | None = None,
    *,
    causal: bool | None = None,
) -> Transformer:
    """A freshly initialised `Transformer` from a `ModelConfig` or a whole `RunConfig`.

    With a RunConfig the backend comes from `config.attention.backend` and the attention from the objective
    (`objective_class(name).causal`) unless given; a bare ModelConfig is bidirectional unless `causal=True`.
    Default backend "sdpa". `device="meta"` allocates nothing (parameter counting of the largest sizes).
    The model is built on the meta device, then materialised and initialised once on `device`,
    so the weights are a function of torch's global seed only.
    """
    if hasattr(config, "model") and hasattr(config, "attention"):
        from llada_lightning.objectives.registry import is_causal

        backend = config.attention.backend if backend is None else backend
        causal = is_causal(config.objective.name) if causal is None else causal
        config = config.model
    backend = check_backend(backend or "sdpa")
    target = torch.device(device) if device is not None else torch.get_default_device()
    with torch.device("meta"):
        model = Transformer(config, backend, causal=bool(causal))
    if target.type != "meta":
        model = model.to_empty(device=target)
        model.init_weights()
    return model


def _validate(config: ModelConfig) -> None:
    check_init(config.init)
    if config.d_model % config.n_heads:
        raise ValueError(f"d_model={config.d_model} must be divisible by n_heads={config.n_heads}")
    if config.head_dim % 2:
        raise ValueError(f"head_dim={config.head_dim} must be even for RoPE")
    if config.n_heads % config.n_kv_heads:
        raise ValueError(f"n_kv_heads={config.n_kv_heads} must divide n_heads={config.n_heads}")
    if config.rope_table_dtype not in ROPE_TABLE_DTYPES:
        raise ValueError(f"rope_table_dtype={config.rope_table_dtype!r}; choose one of {', '.join(ROPE_TABLE_DTYPES)}")
