"""ARM decoding: KV cache vs recomputation, greedy / top-k / top-p, EOS, errors; the model's KV cache itself."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TINY, tiny_model

from llada_lightning.models.attention import attention_mask_4d, cached_attention_mask
from llada_lightning.sampling import generate_ar, sample_next, top_k_top_p_filter


def padded_prompts() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, TINY.vocab_size, (3, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, :3] = 0
    mask[2, :1] = 0
    return x, mask


# ----------------------------------------------------------------------------------------------- the model's cache


@torch.no_grad()
def test_incremental_forward_with_cache_equals_full_forward() -> None:
    model = tiny_model(causal=True, n_layers=2, n_kv_heads=1)
    x, mask = padded_prompts()
    full = model(x, mask)
    cache = model.new_kv_cache()
    parts = [model(x[:, :4], mask[:, :4], cache=cache)] + [model(x[:, i : i + 1], cache=cache) for i in range(4, 7)]
    real = mask.bool()
    torch.testing.assert_close(torch.cat(parts, dim=1)[real], full[real], rtol=1e-5, atol=1e-5)
    assert cache.length == 7


@torch.no_grad()
def test_frozen_prefix_cache_equals_full_forward_when_tokens_do_not_change() -> None:
    model = tiny_model(causal=False)
    x, mask = padded_prompts()
    full = model(x, mask)
    cache = model.new_kv_cache()
    model(x, mask, cache=cache)
    cache.crop(4).freeze()
    for _ in range(2):  # frozen: a second call sees the same prefix
        torch.testing.assert_close(model(x[:, 4:], mask[:, 4:], cache=cache), full[:, 4:], rtol=1e-5, atol=1e-5)
    assert cache.length == 4 and cache.keys[0].shape[1] == 4
    with pytest.raises(ValueError, match="cannot crop"):
        cache.crop(5)


@torch.no_grad()
def test_positions_argument_and_unchanged_default_call() -> None:
    model = tiny_model(causal=True)
    x, mask = padded_prompts()
    torch.testing.assert_close(model(x, mask, positions=torch.arange(7)), model(x, mask), rtol=0, atol=0)
    shifted = model(x, mask, positions=torch.arange(3, 10))  # RoPE is relative: a shift changes ~nothing
    torch.testing.assert_close(shifted[mask.bool()], model(x, mask)[mask.bool()], rtol=1e-4, atol=1e-4)


def test_cached_mask_without_cache_part_equals_attention_mask_4d() -> None:
    pad = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    for causal in (False, True):
        assert torch.equal(cached_attention_mask(pad, 5, causal), attention_mask_4d(pad, causal))
        assert torch.equal(cached_attention_mask(pad, 2, causal), attention_mask_4d(pad, causal)[:, :, 3:])


# ----------------------------------------------------------------------------------------------- generate_ar


def test_cached_greedy_equals_recomputed_greedy() -> None:
    model = tiny_model(causal=True, n_layers=2)
    x, mask = padded_prompts()
    cached = generate_ar(model, x, mask, max_new_tokens=12, temperature=0.0)
    recomputed = generate_ar(model, x, mask, max_new_tokens=12, temperature=0.0, use_cache=False)
    assert cached.shape == (3, 19)
    assert torch.equal(cached, recomputed)
    assert torch.equal(cached[:, :7], x)
    # a plain callable (no cache) recomputes and agrees too
    assert torch.equal(
        generate_ar(
            lambda ids, attention_mask=None: model(ids, attention_mask), x, mask, max_new_tokens=12, temperature=0.0
        ),
        cached,
    )


def test_left_padded_batch_equals_one_by_one() -> None:
    model = tiny_model(causal=True)
    x, mask = padded_prompts()
    batched = generate_ar(model, x, mask, max_new_tokens=6, temperature=0.0)
    for i in range(3):
        alone = generate_ar(model, x[i][mask[i].bool()], max_new_tokens=6, temperature=0.0)
        assert torch.equal(batched[i, 7:], alone[0, -6:])


def test_top_k_one_equals_greedy_and_sampling_is_reproducible() -> None:
    model = tiny_model(causal=True)
    x, mask = padded_prompts()
    greedy = generate_ar(model, x, mask, max_new_tokens=8, temperature=0.0)
    top1 = generate_ar(
        model, x, mask, max_new_tokens=8, temperature=1.5, top_k=1, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(top1, greedy)
    a, b, c = (
        generate_ar(model, x, mask, max_new_tokens=8, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)
    )
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_top_p_filter_on_a_fixed_distribution() -> None:
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])
    logits = probs.log()
    kept = {
        p: torch.isfinite(top_k_top_p_filter(logits, top_p=p)).nonzero().flatten().tolist()
        for p in (0.3, 0.45, 0.7, 0.9, 0.97, 1.0)
    }
    assert kept == {0.3: [1], 0.45: [1], 0.7: [1, 3], 0.9: [1, 2, 3], 0.97: [0, 1, 2, 3], 1.0: [0, 1, 2, 3]}
    assert torch.isfinite(top_k_top_p_filter(logits, top_k=2)).nonzero().flatten().tolist() == [1, 3]
    both = top_k_top_p_filter(logits.expand(2, 4), top_k=2, top_p=0.97)  # batched, top-k first
    assert torch.isfinite(both).tolist() == [[False, True, False, True]] * 2
    # sampling after filtering: renormalised over {1, 3} -> 0.625 / 0.375
    draws = sample_next(logits.expand(8000, 4), top_p=0.7, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=4)
    assert counts[0] == counts[2] == 0
    assert abs(counts[1].item() / 8000 - 0.625) < 0.02


def test_eos_stops_a_row_and_fills_the_rest() -> None:
    eos = 5

    def counter(ids, attention_mask=None):  # next token = previous + 1; row 1 starts closer to EOS
        return torch.nn.functional.one_hot((ids + 1) % 10, 10).float() * 10

    out = generate_ar(counter, torch.tensor([[0], [3]]), max_new_tokens=8, temperature=0.0, eos_id=eos)
    assert out.tolist() == [[0, 1, 2, 3, 4, 5, 5, 5, 5], [3, 4, 5, 5, 5, 5, 5, 5, 5]]
    without = generate_ar(counter, torch.tensor([[3]]), max_new_tokens=4, temperature=0.0)
    assert without.tolist() == [[3, 4, 5, 6, 7]]


def test_invalid_arguments() -> None:
    x = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="causal"):
        generate_ar(tiny_model(causal=False), x, max_new_tokens=2)
    with pytest.raises(ValueError, match="use_cache=True"):
        generate_ar(lambda ids: torch.zeros(*ids.shape, 5), x, max_new_tokens=2, use_cache=True)
    model = tiny_model(causal=True)
    for kwargs, message in [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(max_new_tokens=2, top_p=0.0), "top_p"),
        (dict(max_new_tokens=2, top_k=0), "top_k"),
        (dict(max_new_tokens=2, temperature=-1.0), "temperature"),
    ]:
        with pytest.raises(ValueError, match=message):
            generate_ar(model, x, **kwargs)
