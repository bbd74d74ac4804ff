"""Multi-head self-attention with RoPE and optional GQA, over three kernels.

Backends:
- `sdpa`: `torch.nn.functional.scaled_dot_product_attention` with torch's default kernel choice;
- `math`: the same inside `sdpa_kernel(SDPBackend.MATH)`, the reference kernel that
  `torch.utils.flop_counter.FlopCounterMode` can count (it counts 0 for the fused CPU kernel);
- `flash`: `flash_attn.flash_attn_func` (optional extra, CUDA fp16/bf16 only; other inputs and padding
  masks fall back to `sdpa` with a one-time warning).

Masks are boolean "may attend" tensors [B, 1, T, T] built once per forward by `attention_mask_4d`.

`KVCache` (optional, inference only) keeps each layer's keys and values so a forward can process only new
tokens: growing for ARM decoding, frozen for the diffusion sampler's prefix cache, a window of replaced
positions for its dual cache (see `KVCache`).
"""

from __future__ import annotations

import importlib.util
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from llada_lightning.config.schema import ModelConfig
from llada_lightning.models.layers import apply_rope

BACKENDS = ("sdpa", "math", "flash")
FLASH_MISSING = (
    "attention.backend=flash needs the flash-attn package "
    "(pip install 'llada-lightning[flash]' on a CUDA machine); use attention.backend=sdpa"
)
_flash_fallback_warned = False


def flash_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def check_backend(backend: str) -> str:
    """Validate an attention backend name; `flash` also needs flash-attn installed."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if backend == "flash" and not flash_available():
        raise ImportError(FLASH_MISSING)
    return backend


def attention_mask_4d(key_padding_mask: Tensor, causal: bool) -> Tensor:
    """[B, T] key-padding mask (1/True = real token) -> boolean [B, 1, T, T], True = may attend.

    No query attends to a padding key, except that every position always attends to itself, so fully
    padded rows stay finite; with `causal`, query i also sees only keys j <= i.
    """
    t = key_padding_mask.shape[-1]
    allowed = key_padding_mask.bool()[:, None, None, :]
    eye = torch.eye(t, dtype=torch.bool, device=key_padding_mask.device)
    if causal:
        allowed = allowed & torch.ones_like(eye).tril()
    return allowed | eye


def cached_attention_mask(
    key_padding_mask: Tensor, n_queries: int, causal: bool, first_query: int | None = None
) -> Tensor:
    """[B, S] key-padding mask over cached + new keys -> boolean [B, 1, n_queries, S] for `n_queries` queries.

    Query i sits at key index `first_query + i` (default `S - n_queries`: the new tokens come last; a `KVCache`
    window puts them inside); the same rules as `attention_mask_4d` (no padding keys, always itself, causal: keys
    at or before itself). With `n_queries == S` it equals `attention_mask_4d`.
    """
    s = key_padding_mask.shape[-1]
    first = s - n_queries if first_query is None else first_query
    device = key_padding_mask.device
    q_pos = torch.arange(first, first + n_queries, device=device)[:, None]
    k_pos = torch.arange(s, device=device)[None, :]
    allowed = key_padding_mask.bool()[:, None, None, :]
    if causal:
        allowed = allowed & (k_pos <= q_pos)
    return allowed | (k_pos == q_pos)


class KVCache:
    """Keys (after RoPE) and values [B, S, n_kv_heads, head_dim] of every layer for S processed tokens, and
    their key-padding mask [B, S] (True = real token). Inference only; create with `Transformer.new_kv_cache()`.

    - growing (default): each `Transformer.forward(..., cache=cache)` appends its tokens (ARM decoding; exact);
    - frozen (`freeze()`): forwards attend to the cached prefix plus their own tokens and leave the cache as it
      is (Fast-dLLM's prefix cache for the diffusion sampler: approximate for a bidirectional model, because
      the cached prefix no longer sees later changes of the tokens after it);
    - window (`set_window(start, end)`): a forward takes exactly the tokens of positions [start, end); their keys
      and values overwrite the cached ones there (in place: the cache owns its tensors) and they attend to all S
      positions, cached before and after the window (Fast-dLLM's dual cache, `replace_position` in their
      `llada/model/modeling_llada.py`: approximate for a bidirectional model, whose cached keys do not see the
      window's new tokens; exact for a causal one, whose window never attends to the keys after it).
    `crop(n)` keeps the first n positions (fill with a whole sequence, keep the prompt, freeze).
    """

    def __init__(self, n_layers: int) -> None:
        self.keys: list[Tensor | None] = [None] * n_layers
        self.values: list[Tensor | None] = [None] * n_layers
        self.padding_mask: Tensor | None = None  # [B, S] bool, None while empty
        self.length = 0
        self.frozen = False
        self.window: tuple[int, int] | None = None

    @property
    def start(self) -> int:
        """The key index (and default RoPE position) of the next forward's first token: the window's start, else
        the cache length (new tokens come after the cached ones)."""
        return self.length if self.window is None else self.window[0]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Cached + new keys and values of `layer`; stored unless frozen (a window overwrites its positions)."""
        cached_k, cached_v = self.keys[layer], self.values[layer]
        if self.window is not None:
            start, end = self.window
            cached_k[:, start:end], cached_v[:, start:end] = k, v
            return cached_k, cached_v
        if cached_k is not None:
            k, v = torch.cat((cached_k, k), dim=1), torch.cat((cached_v, v), dim=1)
        if not self.frozen:
            self.keys[layer], self.values[layer] = k, v
        return k, v

    def key_padding_mask(self, new_mask: Tensor) -> Tensor:
        """The [B, S (+ T)] mask of cached + new keys; records the new part unless frozen (call once per forward).
        In a window, `new_mask` [B, end - start] replaces the cached mask there."""
        if self.window is not None:
            start, end = self.window
            if new_mask.shape[1] != end - start:
                raise ValueError(
                    f"a KVCache window [{start}, {end}) takes {end - start} tokens per forward, got {new_mask.shape[1]}"
                )
            full = self.padding_mask.clone()
            full[:, start:end] = new_mask
            self.padding_mask = full
            return full
        full = new_mask if self.padding_mask is None else torch.cat((self.padding_mask, new_mask), dim=1)
        if not self.frozen:
            self.padding_mask, self.length = full, full.shape[1]
        return full

    def crop(self, n: int) -> KVCache:
        """Keep the first `n` cached positions (in place); returns self."""
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot crop a cache of length {self.length} to {n}")
        if self.window is not None and self.window[1] > n:
            raise ValueError(f"cannot crop a cache to {n} inside its window {list(self.window)}")
        self.keys = [None if k is None else k[:, :n] for k in self.keys]
        self.values = [None if v is None else v[:, :n] for v in self.values]
        self.padding_mask = None if self.padding_mask is None else self.padding_mask[:, :n]
        self.length = n
        return self

    def freeze(self) -> KVCache:
        """Stop appending: later forwards read the cache but do not change it; returns self."""
        if self.window is not None:
            raise ValueError("a KVCache with a window cannot be frozen")
        self.frozen = True
        return self

    def set_window(self, start: int, end: int) -> KVCache:
        """Later forwards take the tokens of positions [start, end) and overwrite their keys and values (see the
        class docstring); returns self. Needs a filled, unfrozen cache with `0 <= start < end <= length`."""
        if self.frozen:
            raise ValueError("a frozen KVCache cannot take a window")
        if not 0 <= start < end <= self.length:
            raise ValueError(f"window [{start}, {end}) is not inside a cache of length {self.length}")
        self.window = (start, end)
        return self


def attend(q: Tensor, k: Tensor, v: Tensor, *, causal: bool, mask: Tensor | None, backend: str) -> Tensor:
    """Attention over q [B, T, H, D] and k, v [B, T, H_kv, D] -> [B, T, H, D].

    `mask` is None or the boolean [B, 1, T, T] from `attention_mask_4d` (which already holds causality).
    """
    if backend == "flash":
        if mask is None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
            from flash_attn import flash_attn_func

            return flash_attn_func(q, k, v, causal=causal)  # native GQA
        _warn_flash_fallback()
        backend = "sdpa"
    n_rep = q.shape[2] // k.shape[2]
    if n_rep > 1:  # GQA: repeat kv heads so the kernel (and its FLOP count) sees full heads
        k, v = k.repeat_interleave(n_rep, dim=2), v.repeat_interleave(n_rep, dim=2)
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    is_causal = causal and mask is None
    if backend == "math":
        with sdpa_kernel(SDPBackend.MATH):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    return out.transpose(1, 2)


def _warn_flash_fallback() -> None:
    global _flash_fallback_warned
    if not _flash_fallback_warned:
        _flash_fallback_warned = True
        warnings.warn(
            "attention.backend=flash needs fp16/bf16 CUDA tensors and no padding mask; "
            "falling back to sdpa for such calls",
            stacklevel=3,
        )


class SelfAttention(nn.Module):
    """q/k/v/o projections without biases; k and v have `n_kv_heads * head_dim` outputs (GQA)."""

    def __init__(self, config: ModelConfig, backend: str = "sdpa", causal: bool = False) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.causal = causal
        self.backend = backend
        d = config.d_model
        self.wq = nn.Linear(d, self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(self.n_heads * self.head_dim, d, bias=False)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> Tensor:
        """With `cache`, `x` holds only the new tokens and `mask` (None or [B, 1, T, S + T]) holds causality."""
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim)
        k = self.wk(x).view(b, t, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        causal = self.causal and cache is None  # with a cache, causality lives in the explicit mask
        out = attend(q, k, v, causal=causal, mask=mask, backend=self.backend)
        return self.wo(out.reshape(b, t, self.n_heads * self.head_dim))
