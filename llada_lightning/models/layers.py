"""The LLaMA building blocks: RMSNorm, rotary position embeddings (RoPE) and the SwiGLU feed-forward."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """`x / sqrt(mean(x^2) + eps) * weight`, computed in float32 (Zhang & Sennrich 2019; LLaMA)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


ROPE_TABLE_DTYPES = ("float32", "bfloat16", "float16")


def rope_cos_sin(
    seq_len: int, head_dim: int, theta: float, device: torch.device, table_dtype: str = "float32"
) -> tuple[Tensor, Tensor]:
    """cos and sin tables [seq_len, head_dim] for positions 0..seq_len-1, in float32.

    Frequencies `theta^(-2i/head_dim)` (Su et al. 2021), duplicated into both halves of the head as in
    LLaMA / Hugging Face's rotate-half layout. Computed per call (cheap), so no buffer has to survive
    building on the meta device. `table_dtype` other than float32 rounds the tables to it (still returned in
    float32): SMDM's models were trained with bfloat16 tables (SMDM lit_gpt/diffmodel.py `build_rope_cache`).
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(seq_len, device=device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    cos, sin = angles.cos(), angles.sin()
    if table_dtype != "float32":
        rounded = getattr(torch, table_dtype)
        cos, sin = cos.to(rounded).float(), sin.to(rounded).float()
    return cos, sin


def rotate_half(x: Tensor) -> Tensor:
    """[x1, x2] -> [-x2, x1] over the last dimension (Hugging Face LLaMA convention)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate queries or keys `x` [B, T, H, D] by the tables [T, D] from `rope_cos_sin` (or [B, T, D]: one row of
    positions per sequence)."""
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    xf = x.float()
    return (xf * cos + rotate_half(xf) * sin).type_as(x)


class SwiGLU(nn.Module):
    """`w2(silu(w1 x) * w3 x)`: gate w1, up w3, down w2, no biases (Shazeer 2020; LLaMA)."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff, bias=False)
        self.w3 = nn.Linear(d_model, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
