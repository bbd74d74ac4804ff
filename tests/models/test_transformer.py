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


def _rope(z: torch.Tensor, positions: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """RoPE as complex rotations of pairs (i, i + D/2) of z [b, t, h, hd] at `positions` [t]."""
    hd = cfg.head_dim
    freqs = cfg.rope_theta ** (-torch.arange(hd // 2, dtype=torch.float64) * 2 / hd)
    rot = torch.polar(torch.ones(len(positions), hd // 2, dtype=torch.float64), positions[:, None] * freqs)
    zc = torch.complex(z[..., : hd // 2].double(), z[..., hd // 2 :].double()) * rot[:, None, :]
    return torch.cat((zc.real, zc.imag), dim=-1).float()


def _norm(z: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return z / torch.sqrt(z.pow(2).mean(-1, keepdim=True) + eps) * w


def _qkv(layer, h: torch.Tensor, positions: torch.Tensor, cfg: ModelConfig):
    """A layer's RoPE'd queries and keys and its values [b, t, h, hd] for the hidden states h [b, t, d]."""
    b, t, _ = h.shape
    a, z = layer.attn, _norm(h, layer.attn_norm.weight, cfg.norm_eps)
    q = _rope((z @ a.wq.weight.T).view(b, t, cfg.n_heads, cfg.head_dim), positions, cfg)
    k = _rope((z @ a.wk.weight.T).view(b, t, cfg.n_heads, cfg.head_dim), positions, cfg)
    return q, k, (z @ a.wv.weight.T).view(b, t, cfg.n_heads, cfg.head_dim)


def _attend_and_ffn(layer, h, q, k, v, allowed: torch.Tensor | None, cfg: ModelConfig) -> torch.Tensor:
    """The rest of the layer: explicit softmax attention of q over k, v (`allowed` [t, s] or None), then the FFN."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(cfg.head_dim)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    att = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).flatten(2)
    h = h + att @ layer.attn.wo.weight.T
    z, f = _norm(h, layer.ffn_norm.weight, cfg.norm_eps), layer.ffn
    return h + (F.silu(z @ f.w1.weight.T) * (z @ f.w3.weight.T)) @ f.w2.weight.T


def reference_forward(model: Transformer, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """A direct LLaMA forward: explicit softmax attention, RoPE as complex rotations of pairs (i, i + D/2)."""
    cfg, t = model.config, x.shape[1]
    positions, causal_mask = torch.arange(t), torch.ones(t, t, dtype=torch.bool).tril()
    h = model.embed.weight[x]
    for layer in model.layers:
        h = _attend_and_ffn(layer, h, *_qkv(layer, h, positions, cfg), causal_mask if causal else None, cfg)
    return _norm(h, model.norm.weight, cfg.norm_eps) @ model.head.weight.T


def reference_window_forward(model: Transformer, old: torch.Tensor, window: torch.Tensor, start: int) -> torch.Tensor:
    """Fast-dLLM's dual cache written out (bidirectional): the logits of `window` [b, w], placed at positions
    start..start+w-1 of the sequence `old` [b, s], when every layer's keys/values outside the window are those of
    `old`'s own forward and the window's are computed from the window's tokens."""
    cfg, s, w = model.config, old.shape[1], window.shape[1]
    h_old, h = model.embed.weight[old], model.embed.weight[window]
    for layer in model.layers:
        q_old, k_old, v_old = _qkv(layer, h_old, torch.arange(s), cfg)
        q, k, v = _qkv(layer, h, torch.arange(start, start + w), cfg)
        keys, values = k_old.clone(), v_old.clone()
        keys[:, start : start + w], values[:, start : start + w] = k, v
        h = _attend_and_ffn(layer, h, q, keys, values, None, cfg)
        h_old = _attend_and_ffn(layer, h_old, q_old, k_old, v_old, None, cfg)
    return _norm(h, model.norm.weight, cfg.norm_eps) @ model.head.weight.T


@pytest.mark.parametrize("causal", [False, True])
@torch.no_grad()
def test_matches_reference_forward(causal: bool) -> None:
    model = make(causal, rope_theta=500.0, init_std=0.2)
    x = ids(2, 10)
    torch.testing.assert_close(model(x), reference_forward(model, x, causal), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------- KV cache windows


@torch.no_grad()
def test_cache_window_matches_the_written_out_dual_cache() -> None:
    model = make(rope_theta=500.0, init_std=0.2)  # 2 layers: the window's tokens change later layers' hidden states
    old, window = ids(2, 12), ids(2, 4, seed=2)
    cache = model.new_kv_cache()
    model(old, cache=cache)
    out = model(window, cache=cache.set_window(5, 9))
    torch.testing.assert_close(out, reference_window_forward(model, old, window, 5), rtol=1e-4, atol=1e-4)
    new = old.clone()
    new[:, 5:9] = window
    assert not torch.allclose(out, model(new)[:, 5:9], atol=1e-3)  # approximate: the cached keys saw `old`
    assert cache.length == 12 and cache.keys[0].shape[1] == 12  # replaced, not appended
    torch.testing.assert_close(model(window, cache=cache), out, rtol=0, atol=0)


@torch.no_grad()
def test_cache_window_is_exact_for_a_causal_model_with_padding() -> None:
    model = make(causal=True)
    old, mask = ids(2, 12), torch.ones(2, 12, dtype=torch.long)
    mask[0, :3] = 0
    new = old.clone()
    new[:, 5:9] = ids(2, 4, seed=2)
    cache = model.new_kv_cache()
    model(old, mask, cache=cache)
    cache.set_window(5, 9)
    out = model(new[:, 5:9], mask[:, 5:9], cache=cache)  # its queries never see the stale keys after the window
    torch.testing.assert_close(out, model(new, mask)[:, 5:9], rtol=1e-5, atol=1e-5)
    one = model(new[:, 5:9], cache=model.new_kv_cache())  # the same tokens without the prefix differ
    assert not torch.allclose(out, one, atol=1e-3)


def test_cache_window_errors() -> None:
    model = make()
    cache = model.new_kv_cache()
    with pytest.raises(ValueError, match=r"window \[0, 2\) is not inside a cache of length 0"):
        cache.set_window(0, 2)
    with torch.no_grad():
        model(ids(2, 6), cache=cache)
    with pytest.raises(ValueError, match=r"window \[4, 7\) is not inside a cache of length 6"):
        cache.set_window(4, 7)
    cache.set_window(2, 4)
    wrong_length = r"a KVCache window \[2, 4\) takes 2 tokens per forward, got 3"
    with pytest.raises(ValueError, match=wrong_length), torch.no_grad():
        model(ids(2, 3), cache=cache)
    with pytest.raises(ValueError, match="cannot be frozen"):
        cache.freeze()
    frozen = model.new_kv_cache()
    with torch.no_grad():
        model(ids(2, 6), cache=frozen)
    with pytest.raises(ValueError, match="a frozen KVCache cannot take a window"):
        frozen.freeze().set_window(0, 2)


@torch.no_grad()
def test_positions_may_hold_one_row_per_sequence() -> None:
    model = make(init_std=0.5)  # large weights: positions matter visibly
    x = ids(2, 6)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 2, 4, 6, 8, 10]])
    both = model(x, positions=positions)
    for b in range(2):
        torch.testing.assert_close(both[b], model(x[b : b + 1], positions=positions[b])[0], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(both[1], model(x[1:2])[0], atol=1e-3)  # gapped positions do change the logits
