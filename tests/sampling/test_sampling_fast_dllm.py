"""Fast-dLLM decoding in `generate`: the confidence threshold, the prefix and dual KV caches, forward-pass counts,
and batch invariance of every mode."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import TINY, FixedLogits, tiny_model

from llada_lightning.sampling import generate

MASK = TINY.mask_id


def prompts(batch: int = 2, length: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, TINY.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


def confidence_table(length: int, vocab: int, probs: list[float], offset: int) -> torch.Tensor:
    """Log-probabilities: position offset + j predicts token j with probability probs[j], the rest spread evenly
    (so the sampler's confidence, softmax(logits)[argmax], is probs[j])."""
    table = torch.zeros(length, vocab)
    for j, p in enumerate(probs):
        table[offset + j] = math.log((1 - p) / (vocab - 1))
        table[offset + j, j] = math.log(p)
    return table


class RowLogits:
    """logits[b, i] = table[b, i] (one fixed table per row), whatever the tokens."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table  # [B, T, V]

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.table[:, : input_ids.shape[1]].clone()


class Counting(torch.nn.Module):
    """A Transformer behind a wrapper that counts its calls (and forwards the cache and positions)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, 0

    def new_kv_cache(self):
        return self.model.new_kv_cache()

    def forward(self, input_ids, attention_mask=None, *, cache=None, positions=None):
        self.calls += 1
        return self.model(input_ids, attention_mask, cache=cache, positions=positions)


def left_pad(singles: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A left-padded batch (pad id 0, a real token the mask must hide) and its attention mask."""
    width = max(len(p) for p in singles)
    batch = torch.zeros(len(singles), width, dtype=torch.long)
    mask = torch.zeros(len(singles), width, dtype=torch.long)
    for i, p in enumerate(singles):
        batch[i, width - len(p) :], mask[i, width - len(p) :] = p, 1
    return batch, mask


# ----------------------------------------------------------------------------------------------- threshold


@pytest.mark.parametrize("block_length", [1, 2, 4, 8, 16])
def test_threshold_one_equals_one_token_per_step(block_length: int) -> None:
    # this model's confidences are below 1.0 (were one exactly 1.0, a step would commit two tokens and fail here)
    model, x = tiny_model(), prompts(3, 5)
    kwargs = dict(gen_length=16, block_length=block_length, mask_id=MASK, return_history=True)
    exact = generate(model, x, steps=16, **kwargs)
    fast = generate(model, x, threshold=1.0, **kwargs)
    assert torch.equal(fast.sequences, exact.sequences) and torch.equal(fast.commit_step, exact.commit_step)
    assert fast.forward_passes == exact.forward_passes == 16
    assert fast.row_steps.tolist() == exact.row_steps.tolist() == [16] * 3


@pytest.mark.parametrize(
    ("steps", "expected_steps", "passes"),
    [
        # steps=None (Fast-dLLM): each step commits every confidence >= 0.5, or else only the top one
        (None, [0, 1, 0, 2, 3, 3, 3, 4], 5),
        (8, [0, 1, 0, 2, 3, 3, 3, 4], 5),  # a quota of 1 per step changes nothing; the blocks end early
        (4, [0, 1, 0, 1, 2, 2, 2, 3], 4),  # a quota of 2 per step: the block's two least confident go together
    ],
)
def test_threshold_commits_every_confident_position_and_at_least_the_quota(steps, expected_steps, passes) -> None:
    probs = [0.95, 0.3, 0.7, 0.2, 0.6, 0.55, 0.99, 0.1]
    model = FixedLogits(confidence_table(11, 20, probs, offset=3))
    out = generate(model, prompts(1, 3), gen_length=8, steps=steps, block_length=4, mask_id=MASK, threshold=0.5,
                   return_history=True)  # fmt: skip
    assert out.sequences[0, 3:].tolist() == list(range(8))
    assert out.commit_step[0, 3:].tolist() == expected_steps
    assert out.forward_passes == len(model.calls) == passes and out.row_steps.tolist() == [passes]


def test_threshold_makes_fewer_passes_and_counts_each_rows_steps() -> None:
    gen_length, block_length = 16, 4
    table = torch.stack(
        [
            confidence_table(19, 20, [0.99] * gen_length, offset=3),  # row 0: confident everywhere
            confidence_table(19, 20, [0.5 - 0.01 * j for j in range(gen_length)], offset=3),  # row 1: never 0.9
        ]
    )
    kwargs = dict(gen_length=gen_length, block_length=block_length, mask_id=MASK, threshold=0.9, return_history=True)
    both = generate(RowLogits(table), prompts(2, 3), **kwargs)
    assert both.forward_passes == gen_length  # the batch waits for row 1, one token per step
    assert both.row_steps.tolist() == [gen_length // block_length, gen_length]
    assert both.commit_step[0, 3:].tolist() == [k for k in range(4) for _ in range(block_length)]
    assert both.commit_step[1, 3:].tolist() == list(range(gen_length))
    alone = generate(RowLogits(table[:1]), prompts(2, 3)[:1], **kwargs)  # row 0 alone: one pass per block
    assert alone.forward_passes == gen_length // block_length
    assert torch.equal(alone.sequences[0], both.sequences[0]) and torch.equal(alone.commit_step[0], both.commit_step[0])
    exact = generate(RowLogits(table[:1]), prompts(2, 3)[:1], steps=gen_length, **(kwargs | dict(threshold=None)))
    assert exact.forward_passes == gen_length and torch.equal(exact.sequences, alone.sequences)


@pytest.mark.parametrize("cache", [None, "prefix", "dual"])
@pytest.mark.parametrize("threshold", [None, 0.9])
@pytest.mark.parametrize("cfg_scale", [0.0, 1.0])
def test_forward_passes_are_the_model_calls(cache, threshold, cfg_scale) -> None:
    model = Counting(tiny_model(n_layers=2))
    x, mask = left_pad([prompts(1, 3, seed=1)[0], prompts(1, 6, seed=2)[0]])
    steps = None if threshold else 16
    out = generate(model, x, mask, gen_length=16, steps=steps, block_length=8, mask_id=MASK, threshold=threshold,
                   cache=cache, cfg_scale=cfg_scale, return_history=True)  # fmt: skip
    assert out.forward_passes == model.calls
    assert int(out.row_steps.max()) <= out.forward_passes
    assert (out.sequences[:, x.shape[1] :] != MASK).all()
    if threshold is None:
        assert out.forward_passes == 16 and out.row_steps.tolist() == [16, 16]


# ----------------------------------------------------------------------------------------------- caches


def test_prompt_cache_is_cache_prefix() -> None:
    model, x = tiny_model(n_layers=2), prompts(2, 5)
    kwargs = dict(gen_length=8, steps=8, block_length=4, mask_id=MASK, return_history=True)
    prefix = generate(model, x, cache="prefix", **kwargs)
    for alias in (dict(prompt_cache=True), dict(prompt_cache=True, cache="prefix")):
        out = generate(model, x, **alias, **kwargs)
        assert torch.equal(out.sequences, prefix.sequences) and torch.equal(out.commit_step, prefix.commit_step)
    assert not torch.equal(generate(model, x, **kwargs).sequences, prefix.sequences)  # 2 layers: approximate


@pytest.mark.parametrize("threshold", [None, 0.9])
def test_dual_cache_with_one_token_blocks_equals_exact(threshold) -> None:
    model = tiny_model(n_layers=2)  # 2 layers: with longer blocks the dual cache is approximate (next test)
    x, mask = left_pad([prompts(1, 3, seed=1)[0], prompts(1, 6, seed=2)[0]])
    kwargs = dict(gen_length=8, steps=None if threshold else 8, block_length=1, mask_id=MASK, cfg_scale=1.0)
    exact = generate(model, x, mask, threshold=threshold, **kwargs)
    assert torch.equal(generate(model, x, mask, threshold=threshold, cache="dual", **kwargs), exact)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_caches_are_exact_at_the_first_step_of_each_block(cache) -> None:
    model = tiny_model(n_layers=2)
    x, mask = left_pad([prompts(1, 3, seed=1)[0], prompts(1, 6, seed=2)[0]])
    kwargs = dict(gen_length=12, block_length=4, mask_id=MASK, cfg_scale=1.0)
    one_step = dict(kwargs, steps=3)  # every step is a block's first: one full forward each
    assert torch.equal(generate(model, x, mask, cache=cache, **one_step), generate(model, x, mask, **one_step))
    many = dict(kwargs, steps=12)  # the check can fail: the cached steps after the first are approximate
    assert not torch.equal(generate(model, x, mask, cache=cache, **many), generate(model, x, mask, **many))


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("threshold", [None, 0.9])
@pytest.mark.parametrize("causal", [False, True])
def test_caches_are_exact_when_block_tokens_do_not_change_other_keys(cache, threshold, causal) -> None:
    """One bidirectional layer: every position's keys/values are a function of its own token and position, so
    stale cached keys outside the block are the true ones. A causal model: keys never depend on later tokens,
    and the block's queries do not see the (stale) suffix."""
    model = tiny_model(causal=causal, n_layers=2 if causal else 1)
    x, mask = left_pad([prompts(1, 3, seed=1)[0], prompts(1, 6, seed=2)[0], prompts(1, 5, seed=3)[0]])
    kwargs = dict(gen_length=16, steps=None if threshold else 16, block_length=8, mask_id=MASK, cfg_scale=0.5)
    exact = generate(model, x, mask, threshold=threshold, return_history=True, **kwargs)
    cached = generate(model, x, mask, threshold=threshold, cache=cache, return_history=True, **kwargs)
    assert torch.equal(cached.sequences, exact.sequences) and torch.equal(cached.commit_step, exact.commit_step)


# ----------------------------------------------------------------------------------------------- batch invariance


@pytest.mark.parametrize("cache", [None, "prefix", "dual"])
@pytest.mark.parametrize(("threshold", "steps"), [(None, 12), (None, 6), (0.9, None), (0.9, 6)])
@pytest.mark.parametrize("cfg_scale", [0.0, 1.0])
def test_each_row_alone_equals_the_row_in_a_padded_batch(cache, threshold, steps, cfg_scale) -> None:
    model = tiny_model(n_layers=2)
    singles = [prompts(1, 3, seed=1)[0], prompts(1, 6, seed=2)[0], prompts(1, 5, seed=3)[0]]
    x, mask = left_pad(singles)
    kwargs = dict(gen_length=12, steps=steps, block_length=4, mask_id=MASK, cfg_scale=cfg_scale, cache=cache)
    kwargs |= dict(threshold=threshold, return_history=True)
    together = generate(model, x, mask, **kwargs)
    assert torch.equal(together.sequences[:, : x.shape[1]], x)  # padding (and prompt) unchanged
    for i, p in enumerate(singles):
        alone = generate(model, p[None], **kwargs)
        assert torch.equal(together.sequences[i, x.shape[1] :], alone.sequences[0, len(p) :]), i
        assert torch.equal(together.commit_step[i, x.shape[1] :], alone.commit_step[0, len(p) :]), i
        assert together.row_steps[i] == alone.row_steps[0] == alone.forward_passes, i


@pytest.mark.parametrize("cache", [None, "dual"])
@pytest.mark.parametrize(("threshold", "steps", "remasking"), [(None, 6, "random"), (0.5, None, "low_confidence")])
def test_sampled_rows_with_their_own_generators_are_batch_invariant(cache, threshold, steps, remasking) -> None:
    """temperature > 0: with one generator per row (each advanced only on its row's steps), a row sampled in a
    padded batch equals the row sampled alone from a generator seeded the same."""
    model = tiny_model(n_layers=2)
    singles = [prompts(1, 3, seed=1)[0], prompts(1, 6, seed=2)[0], prompts(1, 5, seed=3)[0]]
    x, mask = left_pad(singles)
    kwargs = dict(gen_length=12, steps=steps, block_length=4, mask_id=MASK, cache=cache, threshold=threshold)
    kwargs |= dict(temperature=4.0, remasking=remasking, return_history=True)  # hot: the tiny model is peaked

    def gens(*seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    together = generate(model, x, mask, generator=gens(10, 11, 12), **kwargs)
    for i, p in enumerate(singles):
        alone = generate(model, p[None], generator=gens(10 + i), **kwargs)
        assert torch.equal(together.sequences[i, x.shape[1] :], alone.sequences[0, len(p) :]), i
    other = generate(model, x, mask, generator=gens(10, 99, 12), **kwargs)  # the draws matter: a new seed differs
    assert not torch.equal(other.sequences[1], together.sequences[1])
    assert torch.equal(other.sequences[0], together.sequences[0])
    with pytest.raises(ValueError, match="2 per-row generators for a batch of 3 prompts"):
        generate(model, x, mask, generator=gens(1, 2), **kwargs)


@pytest.mark.parametrize("cache", [None, "prefix", "dual"])
@pytest.mark.parametrize("threshold", [None, 0.9])
def test_fill_after_eos_is_batch_invariant(cache, threshold) -> None:
    model = tiny_model(n_layers=2)
    singles = [prompts(1, 3, seed=1)[0], prompts(1, 6, seed=2)[0], prompts(1, 5, seed=3)[0]]
    x, mask = left_pad(singles)
    kwargs = dict(gen_length=12, steps=None if threshold else 12, block_length=4, mask_id=MASK, cfg_scale=1.0)
    kwargs |= dict(cache=cache, threshold=threshold, return_history=True)
    plain = generate(model, x, mask, **kwargs).sequences[:, x.shape[1] :]
    eos = int(plain[:, :4].flatten().mode().values)  # a token the rows generate early: it ends some rows
    together = generate(model, x, mask, eos_id=eos, fill_after_eos=True, **kwargs)
    generated = together.sequences[:, x.shape[1] :]
    assert not torch.equal(generated, plain)  # the premise: filling changed some row
    for i, p in enumerate(singles):
        alone = generate(model, p[None], eos_id=eos, fill_after_eos=True, **kwargs)
        assert torch.equal(generated[i], alone.sequences[0, len(p) :]), i
        assert torch.equal(together.commit_step[i, x.shape[1] :], alone.commit_step[0, len(p) :]), i
        assert together.row_steps[i] == alone.row_steps[0], i


def test_a_padded_batch_gives_the_transformer_per_row_positions() -> None:
    seen = []
    model = tiny_model()

    class Recorder(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, positions=None):
            seen.append(positions)
            return model(input_ids, attention_mask, positions=positions)

    x, mask = left_pad([prompts(1, 3, seed=1)[0], prompts(1, 6, seed=2)[0]])
    generate(Recorder(), x, mask, gen_length=4, steps=1, block_length=4, mask_id=MASK)
    assert seen[0][0, 3:].tolist() == list(range(7)) and seen[0][1].tolist() == list(range(10))
    generate(Recorder(), x[1:], gen_length=4, steps=1, block_length=4, mask_id=MASK)
    assert seen[1] is None  # no padding: the model's own positions 0..T-1


# ----------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(threshold=0.0), r"threshold must be a number in \(0, 1\], got 0.0"),
        (dict(threshold=1.5), r"threshold must be a number in \(0, 1\], got 1.5"),
        (dict(threshold=float("nan")), r"threshold must be a number in \(0, 1\], got nan"),
        (dict(threshold="0.9"), r"threshold must be a number in \(0, 1\], got '0.9'"),
        (dict(threshold=True), r"threshold must be a number in \(0, 1\], got True"),
        (dict(threshold=0.9, remasking="random"), "threshold=0.9 needs remasking='low_confidence'"),
        (dict(steps=None), "steps is required"),
        (dict(threshold=0.9, steps=3), "steps=3 must be divisible by the number of blocks"),
        (dict(cache="full"), "unknown cache 'full'; valid: prefix, dual"),
        (dict(cache="dual", prompt_cache=True), "prompt_cache=True means cache='prefix', but cache='dual'"),
        (dict(cache="dual"), "cache='dual' needs a model with KV-cache support"),
    ],
)
def test_invalid_fast_decoding_arguments(kwargs: dict, message: str) -> None:
    args = dict(gen_length=8, block_length=4, steps=4, mask_id=MASK) | kwargs
    model = FixedLogits(torch.zeros(20, 50))
    with pytest.raises(ValueError, match=message):
        generate(model, prompts(2, 5), **args)
    assert not model.calls
