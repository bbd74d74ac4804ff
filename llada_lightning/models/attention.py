"""Multi-head self-attention with RoPE and optional GQA, over three kernels.

Backends:
- `sdpa`: `torch.nn.functional.scaled_dot_product_attention` with torch's default kernel choice;
- `math`: the same inside `sdpa_kernel(SDPBackend.MATH)`, the reference kernel that
  `torch.utils.flop_counter.FlopCounterMode` can count (it counts 0 for the fused CPU kernel);
- `flash`: `flash_attn.flash_attn_func` (optional extra, CUDA fp16/bf16 only; other inputs and padding
  masks fall back to `sdpa` with a one-time warning).

Masks are boolean "may attend" tensors [B, 1, T, T] built once per forward by `attention_mask_4d`.
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

    def __init__(self, config: ModelConfig, backend: str = "sdpa") -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.causal = config.causal
        self.backend = backend
        d = config.d_model
        self.wq = nn.Linear(d, self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(self.n_heads * self.head_dim, d, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None = None) -> Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim)
        k = self.wk(x).view(b, t, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = attend(q, k, v, causal=self.causal, mask=mask, backend=self.backend)
        return self.wo(out.reshape(b, t, self.n_heads * self.head_dim))
