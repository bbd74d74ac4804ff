"""The backbone: shapes, causal vs bidirectional, padding, GQA, tying, mask id, init, reference forward."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from llada_lightning.config import ModelConfig, RunConfig
from llada_lightning.models import Transformer, build_model
from llada_lightning.models.layers import RMSNorm

CFG = ModelConfig(n_layers=2, n_heads=4, n_kv_heads=4, d_model=32, d_ff=80, vocab_size=50)


def make(causal: bool = False, seed: int = 0, **changes) -> Transformer:
    torch.manual_seed(seed)
    return build_model(dataclasses.replace(CFG, **changes), causal=causal).eval()


def ids(batch: int = 2, seq_len: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, CFG.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("causal", [False, True])
def test_output_shape_and_dtype(causal: bool) -> None:
    logits = make(causal)(ids(3, 7))
    assert logits.shape == (3, 7, CFG.vocab_size)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@torch.no_grad()
def test_causal_model_ignores_future_tokens_bidirectional_does_not() -> None:
    x = ids(2, 12)
    y = x.clone()
    y[:, 8] = (y[:, 8] + 1) % CFG.vocab_size
    causal, bidirectional = make(causal=True), make(causal=False)
    torch.testing.assert_close(causal(x)[:, :8], causal(y)[:, :8], rtol=0, atol=0)
    assert not torch.allclose(causal(x)[:, 8:], causal(y)[:, 8:])
    assert not torch.allclose(bidirectional(x)[:, :8], bidirectional(y)[:, :8])


@pytest.mark.parametrize("causal", [False, True])
@torch.no_grad()
def test_padding_keys_have_no_influence(causal: bool) -> None:
    model = make(causal)
    x = ids(2, 12)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[0, :5] = 0  # left padding
    mask[1, 9:] = 0  # right padding
    y = x.clone()
    y[0, :5] = torch.randint(0, CFG.vocab_size, (5,))
    y[1, 9:] = torch.randint(0, CFG.vocab_size, (3,))
    real = mask.bool()
    out_x, out_y = model(x, attention_mask=mask), model(y, attention_mask=mask)
    torch.testing.assert_close(out_x[real], out_y[real], rtol=1e-5, atol=1e-6)
    # without the mask the same change does reach the real tokens: the check above can fail
    assert not torch.allclose(model(x)[0, 5:], model(y)[0, 5:])
    # a boolean mask means the same as an integer one
    torch.testing.assert_close(model(x, attention_mask=real), out_x, rtol=0, atol=0)


@pytest.mark.parametrize("causal", [False, True])
@torch.no_grad()
def test_fully_padded_rows_stay_finite(causal: bool) -> None:
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[1, 3:] = True
    mask[1, 0] = False
    logits = make(causal)(ids(2, 12), attention_mask=mask)
    assert torch.isfinite(logits).all()


def test_gqa_runs_and_has_fewer_params() -> None:
    full, gqa = make(), make(n_kv_heads=2)
    assert gqa.layers[0].attn.wk.weight.shape == (2 * CFG.head_dim, CFG.d_model)
    assert gqa(ids()).shape == (2, 12, CFG.vocab_size)
    assert sum(p.numel() for p in gqa.parameters()) < sum(p.numel() for p in full.parameters())


def test_gqa_with_one_kv_head_equals_full_heads_with_repeated_kv() -> None:
    gqa = make(n_kv_heads=1, causal=True)
    full = make(causal=True)
    state = gqa.state_dict()
    for i in range(CFG.n_layers):
        for w in ("wk", "wv"):
            state[f"layers.{i}.attn.{w}.weight"] = state[f"layers.{i}.attn.{w}.weight"].repeat(CFG.n_heads, 1)
    full.load_state_dict(state)
    x = ids()
    torch.testing.assert_close(gqa(x), full(x), rtol=1e-5, atol=1e-5)


def test_tied_embeddings_share_storage_and_gradients() -> None:
    model = make(tie_embeddings=True)
    assert model.head is None
    assert model.head_weight.data_ptr() == model.embed.weight.data_ptr()
    assert model.head_weight.shape == (CFG.vocab_size, CFG.d_model)
    assert model.embed.weight.shape == (CFG.vocab_size + 1, CFG.d_model)
    model(ids()).sum().backward()
    assert model.embed.weight.grad is not None
    assert model.embed.weight.grad[: CFG.vocab_size].abs().sum() > 0


def test_mask_id_is_a_valid_input() -> None:
    model = make()
    assert model.embed.num_embeddings == CFG.vocab_size + 1
    x = torch.full((2, 6), CFG.mask_id)  # mask_id == vocab_size when mask_token_id is None
    assert torch.isfinite(model(x)).all()
    inside = make(mask_token_id=7)
    assert inside.embed.num_embeddings == CFG.vocab_size
    with pytest.raises(IndexError):
        inside(torch.full((1, 3), CFG.vocab_size))


def test_deterministic_init() -> None:
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.embed.weight, c.embed.weight)


def test_init_statistics() -> None:
    cfg = ModelConfig(n_layers=4, n_heads=4, n_kv_heads=4, d_model=256, d_ff=512, vocab_size=512)
    torch.manual_seed(0)
    model = build_model(cfg)
    residual = cfg.init_std / math.sqrt(2 * cfg.n_layers)
    for name, p in model.named_parameters():
        if p.ndim == 1:
            assert torch.equal(p, torch.ones_like(p)), name
            continue
        expected = residual if name.endswith(("wo.weight", "w2.weight")) else cfg.init_std
        assert abs(p.mean().item()) < 0.1 * expected, name
        assert p.std().item() == pytest.approx(expected, rel=0.05), name
    assert all(not isinstance(m, torch.nn.Linear) or m.bias is None for m in model.modules())


def test_build_from_run_config_and_meta_device() -> None:
    run = RunConfig(model=CFG)
    run.attention.backend = "math"
    assert build_model(run).backend == "math"
    assert build_model(run, backend="sdpa").backend == "sdpa"
    assert build_model(CFG).backend == "sdpa"
    meta = build_model(run, device="meta")
    assert all(p.is_meta for p in meta.parameters())
    assert meta.config is CFG


def test_invalid_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="n_kv_heads"):
        build_model(dataclasses.replace(CFG, n_kv_heads=3))
    with pytest.raises(ValueError, match="n_heads"):
        build_model(dataclasses.replace(CFG, n_heads=5))


def test_rmsnorm() -> None:
    norm = RMSNorm(8, eps=1e-5)
    x = torch.randn(3, 8) * 5
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(norm(x), expected)


def reference_forward(model: Transformer, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """A direct LLaMA forward: explicit softmax attention, RoPE as complex rotations of pairs (i, i + D/2)."""
    cfg = model.config
    b, t = x.shape
    hd, nh = cfg.head_dim, cfg.n_heads
    freqs = cfg.rope_theta ** (-torch.arange(hd // 2, dtype=torch.float64) * 2 / hd)
    rot = torch.polar(torch.ones(t, hd // 2, dtype=torch.float64), torch.arange(t)[:, None] * freqs)

    def rope(z: torch.Tensor) -> torch.Tensor:  # [b, t, h, hd]
        zc = torch.complex(z[..., : hd // 2].double(), z[..., hd // 2 :].double()) * rot[:, None, :]
        return torch.cat((zc.real, zc.imag), dim=-1).float()

    def norm(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return z / torch.sqrt(z.pow(2).mean(-1, keepdim=True) + cfg.norm_eps) * w

    h = model.embed.weight[x]
    for layer in model.layers:
        a = layer.attn
        z = norm(h, layer.attn_norm.weight)
        q = rope((z @ a.wq.weight.T).view(b, t, nh, hd))
        k = rope((z @ a.wk.weight.T).view(b, t, nh, hd))
        v = (z @ a.wv.weight.T).view(b, t, nh, hd)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
        if causal:
            scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        att = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(b, t, nh * hd)
        h = h + att @ a.wo.weight.T
        z = norm(h, layer.ffn_norm.weight)
        f = layer.ffn
        h = h + (F.silu(z @ f.w1.weight.T) * (z @ f.w3.weight.T)) @ f.w2.weight.T
    return norm(h, model.norm.weight) @ model.head.weight.T


@pytest.mark.parametrize("causal", [False, True])
@torch.no_grad()
def test_matches_reference_forward(causal: bool) -> None:
    model = make(causal, rope_theta=500.0, init_std=0.2)
    x = ids(2, 10)
    torch.testing.assert_close(model(x), reference_forward(model, x, causal), rtol=1e-4, atol=1e-4)
