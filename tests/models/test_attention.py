"""Attention kernels, masks and RoPE."""

from __future__ import annotations

import importlib.util
import math
import warnings

import pytest
import torch

from llada_lightning.config import ModelConfig
from llada_lightning.models import attention, build_model
from llada_lightning.models.attention import (
    FLASH_MISSING,
    attend,
    attention_mask_4d,
    cached_attention_mask,
    check_backend,
)
from llada_lightning.models.layers import apply_rope, rope_cos_sin

CFG = ModelConfig(n_layers=2, n_heads=4, n_kv_heads=2, d_model=32, d_ff=80, vocab_size=50)
HAS_FLASH = importlib.util.find_spec("flash_attn") is not None


def naive_attention(q, k, v, allowed: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D), masked) v over [B, T, H, D] inputs, kv heads repeated for GQA."""
    rep = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v)


def qkv(b: int = 2, t: int = 9, h: int = 4, h_kv: int = 2, d: int = 8):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(b, t, n, d, generator=g) for n in (h, h_kv, h_kv))


def test_mask_4d_semantics() -> None:
    pad = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]])
    bi, causal = attention_mask_4d(pad, causal=False), attention_mask_4d(pad, causal=True)
    assert bi.shape == causal.shape == (2, 1, 4, 4)
    expected_bi_row0 = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(bi[0, 0], expected_bi_row0)
    expected_causal_row1 = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal[1, 0], expected_causal_row1)
    assert torch.equal(causal[0, 0], expected_bi_row0.tril())


def test_cached_mask_for_queries_inside_the_keys() -> None:
    """A KVCache window: queries at key indices 2 and 3 of 6 keys, the first key padding."""
    pad = torch.tensor([[0, 1, 1, 1, 1, 1]])
    bi = cached_attention_mask(pad, 2, causal=False, first_query=2)
    assert bi[0, 0].int().tolist() == [[0, 1, 1, 1, 1, 1]] * 2
    causal = cached_attention_mask(pad, 2, causal=True, first_query=2)
    assert causal[0, 0].int().tolist() == [[0, 1, 1, 0, 0, 0], [0, 1, 1, 1, 0, 0]]
    for c in (False, True):  # the default: the queries are the last keys
        assert torch.equal(cached_attention_mask(pad, 2, c, first_query=4), cached_attention_mask(pad, 2, c))


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_attend_matches_naive_reference(backend: str, causal: bool, padded: bool) -> None:
    q, k, v = qkv()
    pad = torch.ones(2, 9, dtype=torch.bool)
    if padded:
        pad[0, :4] = False
    allowed = attention_mask_4d(pad, causal)
    mask = allowed if padded else None
    out = attend(q, k, v, causal=causal, mask=mask, backend=backend)
    torch.testing.assert_close(out, naive_attention(q, k, v, allowed), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@torch.no_grad()
def test_sdpa_and_math_backends_agree(causal: bool) -> None:
    cfg = CFG
    torch.manual_seed(0)
    sdpa = build_model(cfg, backend="sdpa", causal=causal)
    math_model = build_model(cfg, backend="math", causal=causal)
    math_model.load_state_dict(sdpa.state_dict())
    x = torch.randint(0, cfg.vocab_size, (2, 16))
    pad = torch.ones(2, 16, dtype=torch.bool)
    pad[1, :6] = False
    torch.testing.assert_close(sdpa(x), math_model(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sdpa(x, attention_mask=pad), math_model(x, attention_mask=pad), rtol=1e-5, atol=1e-5)


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="sdpa, math, flash"):
        check_backend("xformers")
    with pytest.raises(ValueError, match="'xformers'"):
        build_model(CFG, backend="xformers")


@pytest.mark.skipif(HAS_FLASH, reason="flash-attn is installed")
def test_flash_without_flash_attn_fails_at_build_time() -> None:
    with pytest.raises(ImportError) as info:
        build_model(CFG, backend="flash")
    assert str(info.value) == FLASH_MISSING
    assert "pip install 'llada-lightning[flash]'" in FLASH_MISSING
    assert "attention.backend=sdpa" in FLASH_MISSING


def test_flash_falls_back_to_sdpa_on_cpu_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attention, "flash_available", lambda: True)
    monkeypatch.setattr(attention, "_flash_fallback_warned", False)
    torch.manual_seed(0)
    flash = build_model(CFG, backend="flash")
    sdpa = build_model(CFG, backend="sdpa")
    sdpa.load_state_dict(flash.state_dict())
    x = torch.randint(0, CFG.vocab_size, (2, 8))
    with pytest.warns(UserWarning, match="falling back to sdpa"):
        out = flash(x)
    torch.testing.assert_close(out, sdpa(x), rtol=0, atol=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        flash(x)
    assert record == []  # warned only once


def test_rope_rotates_pairs_half_a_head_apart() -> None:
    d, theta = 8, 100.0
    cos, sin = rope_cos_sin(5, d, theta, torch.device("cpu"))
    x = torch.randn(1, 5, 1, d)
    out = apply_rope(x, cos, sin)
    for pos in range(5):
        for i in range(d // 2):
            angle = pos * theta ** (-2 * i / d)
            a, b = x[0, pos, 0, i].item(), x[0, pos, 0, i + d // 2].item()
            expected = (a * math.cos(angle) - b * math.sin(angle), a * math.sin(angle) + b * math.cos(angle))
            assert out[0, pos, 0, i].item() == pytest.approx(expected[0], abs=1e-5)
            assert out[0, pos, 0, i + d // 2].item() == pytest.approx(expected[1], abs=1e-5)


def test_rope_scores_depend_only_on_relative_position() -> None:
    d = 16
    cos, sin = rope_cos_sin(12, d, 10000.0, torch.device("cpu"))
    q, k = torch.randn(d), torch.randn(d)
    seq_q = apply_rope(q.expand(1, 12, 1, d), cos, sin)[0, :, 0]
    seq_k = apply_rope(k.expand(1, 12, 1, d), cos, sin)[0, :, 0]
    scores = seq_q @ seq_k.T
    torch.testing.assert_close(scores[3, 1], scores[10, 8], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores[0, 0], q @ k, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(scores[3, 1], scores[3, 2])
