"""LLaDA's reverse process: schedule, commit order, blocks, CFG, padding, EOS, randomness, prompt cache, errors."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import TINY, FixedLogits, tiny_model

from llada_lightning.sampling import generate, gumbel_argmax, num_transfer_tokens, select_top

MASK = TINY.mask_id  # 50 == vocab_size: an extra embedding row, never a head column


def prompts(batch: int = 2, length: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, TINY.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


def peaked_table(length: int, vocab: int, sharpness: list[float], offset: int) -> torch.Tensor:
    """Fixed logits: position offset + j predicts token j % vocab with logit sharpness[j], all others 0."""
    table = torch.zeros(length, vocab)
    for j, s in enumerate(sharpness):
        table[offset + j, j % vocab] = s
    return table


def reference_generate(model, prompt, *, gen_length, steps, block_length, mask_id, cfg_scale=0.0):
    """LLaDA generate.py written out with Python loops over rows and positions (greedy, no padding): the oracle."""
    b, p = prompt.shape
    x = torch.cat((prompt, torch.full((b, gen_length), mask_id)), dim=1)
    num_blocks = gen_length // block_length
    steps_per_block = steps // num_blocks
    for k in range(num_blocks):
        lo, hi = p + k * block_length, p + (k + 1) * block_length
        for i in range(steps_per_block):
            n = block_length // steps_per_block + (1 if i < block_length % steps_per_block else 0)
            logits = model(x)
            if cfg_scale:
                uncond = x.clone()
                uncond[:, :p] = mask_id
                un = model(uncond)
                logits = un + (cfg_scale + 1) * (logits - un)
            probs = torch.softmax(logits.double(), dim=-1)
            for row in range(b):
                masked = [j for j in range(lo, hi) if x[row, j] == mask_id]
                masked.sort(key=lambda j, row=row: (-probs[row, j].max().item(), j))
                for j in masked[:n]:
                    x[row, j] = probs[row, j].argmax()
    return x


# ----------------------------------------------------------------------------------------------- schedule


def test_num_transfer_tokens_matches_hand_computation() -> None:
    assert num_transfer_tokens(torch.tensor([7]), 3).tolist() == [[3, 2, 2]]
    counts = num_transfer_tokens(torch.tensor([0, 1, 5, 8, 10]), 4)
    assert counts.tolist() == [[0, 0, 0, 0], [1, 0, 0, 0], [2, 1, 1, 1], [2, 2, 2, 2], [3, 3, 2, 2]]
    assert counts.sum(dim=1).tolist() == [0, 1, 5, 8, 10]


def test_per_step_commit_counts_follow_the_schedule() -> None:
    model = FixedLogits(torch.randn(12, 50, generator=torch.Generator().manual_seed(0)))
    out = generate(model, prompts(2, 5), gen_length=7, steps=3, block_length=7, mask_id=MASK, return_history=True)
    generated = out.commit_step[:, 5:]
    for row in generated:
        assert torch.bincount(row, minlength=3).tolist() == [3, 2, 2]
    assert (out.sequences[:, 5:] != MASK).all()
    assert len(model.calls) == 3


def test_select_top_is_per_row() -> None:
    conf = torch.tensor([[0.1, 0.9, 0.5, -math.inf], [0.3, 0.2, 0.1, 0.4]])
    chosen = select_top(conf, torch.tensor([2, 1]))
    assert chosen.tolist() == [[False, True, True, False], [False, False, False, True]]


# ----------------------------------------------------------------------------------------------- order


def test_greedy_commits_most_confident_positions_first() -> None:
    sharpness = [1.0, 5.0, 3.0, 6.0, 2.0, 4.0]
    model = FixedLogits(peaked_table(10, 20, sharpness, offset=4))
    out = generate(model, prompts(2, 4), gen_length=6, steps=6, block_length=6, mask_id=MASK, return_history=True)
    expected_order = [5, 1, 3, 0, 4, 2]  # rank of each position's confidence, most confident first
    assert out.commit_step[:, 4:].tolist() == [expected_order] * 2
    assert out.sequences[:, 4:].tolist() == [list(range(6))] * 2  # argmax tokens


def test_no_commit_outside_the_current_block() -> None:
    # the second block is far more confident than the first: only the block restriction keeps it waiting
    sharpness = [1.0, 1.5, 2.0, 2.5, 9.0, 8.0, 7.0, 6.0]
    model = FixedLogits(peaked_table(11, 20, sharpness, offset=3))
    out = generate(model, prompts(1, 3), gen_length=8, steps=4, block_length=4, mask_id=MASK, return_history=True)
    steps = out.commit_step[0, 3:]
    assert set(steps[:4].tolist()) == {0, 1} and set(steps[4:].tolist()) == {2, 3}
    # one block: the confident second half goes first
    whole = generate(model, prompts(1, 3), gen_length=8, steps=4, block_length=8, mask_id=MASK, return_history=True)
    assert set(whole.commit_step[0, 7:].tolist()) == {0, 1}


@pytest.mark.parametrize(("block_length", "cfg_scale"), [(8, 0.0), (4, 0.0), (4, 1.5)])
def test_matches_looped_reference_on_a_transformer(block_length: int, cfg_scale: float) -> None:
    model, x = tiny_model(), prompts(3, 5)
    kwargs = dict(gen_length=8, steps=4, block_length=block_length, mask_id=MASK, cfg_scale=cfg_scale)
    expected = reference_generate(model, x, **kwargs)
    assert torch.equal(generate(model, x, **kwargs), expected)


# ----------------------------------------------------------------------------------------------- CFG


def test_cfg_scale_zero_equals_no_cfg() -> None:
    model, x = tiny_model(), prompts(2, 5)
    plain = generate(model, x, gen_length=8, steps=8, block_length=4, mask_id=MASK)
    zero = generate(model, x, gen_length=8, steps=8, block_length=4, mask_id=MASK, cfg_scale=0.0)
    guided = generate(model, x, gen_length=8, steps=8, block_length=4, mask_id=MASK, cfg_scale=3.0)
    assert torch.equal(plain, zero)
    assert not torch.equal(plain, guided)  # the comparison can fail: guidance does change this model's output


class PromptSensitive:
    """cond logits [1, 1.2, 0] when the last prompt token is visible, un logits [0, 1.2, 0] when it is masked."""

    def __init__(self, prompt_len: int) -> None:
        self.prompt_len, self.calls = prompt_len, []

    def __call__(self, input_ids, attention_mask=None):
        self.calls.append((input_ids.clone(), attention_mask))
        b, t = input_ids.shape
        logits = torch.tensor([0.0, 1.2, 0.0]).repeat(b, t, 1)
        visible = input_ids[:, self.prompt_len - 1] != 3
        logits[visible, :, 0] = 1.0
        return logits


@pytest.mark.parametrize("padded", [False, True])
def test_cfg_formula_with_and_without_attention_mask(padded: bool) -> None:
    x = torch.tensor([[2, 1, 2], [1, 1, 2]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]]) if padded else None
    model = PromptSensitive(prompt_len=3)
    kwargs = dict(gen_length=2, steps=2, block_length=2, mask_id=3)
    assert generate(model, x, mask, **kwargs)[:, 3:].eq(1).all()  # cond alone: token 1
    out = generate(model, x, mask, cfg_scale=1.0, **kwargs)  # un + 2 (cond - un) = [2, 1.2, 0]: token 0
    assert out[:, 3:].eq(0).all()
    both, both_mask = model.calls[-1]
    assert both.shape == (4, 5)
    assert torch.equal(both[:2, :3], x)  # conditional half keeps the prompt
    real = torch.ones(2, 3, dtype=torch.bool) if mask is None else mask.bool()
    assert (both[2:, :3][real] == 3).all() and torch.equal(both[2:, :3][~real], x[~real])  # padding stays
    if padded:
        assert torch.equal(both_mask, torch.cat((mask, torch.ones(2, 2, dtype=torch.long)), 1).bool().repeat(2, 1))
    else:
        assert both_mask is None


# ----------------------------------------------------------------------------------------------- batching


@pytest.mark.parametrize("prompt_cache", [False, True])
@pytest.mark.parametrize("cfg_scale", [0.0, 1.0])
def test_left_padded_batch_equals_one_by_one(prompt_cache: bool, cfg_scale: float) -> None:
    model = tiny_model()
    singles = [prompts(1, 3, seed=1)[0], prompts(1, 6, seed=2)[0], prompts(1, 5, seed=3)[0]]
    width = max(len(p) for p in singles)
    batch = torch.zeros(len(singles), width, dtype=torch.long)  # pad id 0 (a real token: the mask must hide it)
    mask = torch.zeros(len(singles), width, dtype=torch.long)
    for i, p in enumerate(singles):
        batch[i, width - len(p) :], mask[i, width - len(p) :] = p, 1
    kwargs = dict(gen_length=8, steps=4, block_length=4, mask_id=MASK, cfg_scale=cfg_scale, prompt_cache=prompt_cache)
    together = generate(model, batch, mask, **kwargs)
    assert torch.equal(together[:, :width], batch)  # padding (and prompt) unchanged
    for i, p in enumerate(singles):
        alone = generate(model, p[None], **kwargs)
        assert torch.equal(together[i, width:], alone[0, len(p) :]), i


def test_accepts_callable_without_attention_mask_argument() -> None:
    table = torch.randn(9, 50, generator=torch.Generator().manual_seed(1))
    out = generate(
        lambda ids: table[: ids.shape[1]].expand(ids.shape[0], -1, -1),
        prompts(2, 5),
        gen_length=4,
        steps=2,
        block_length=4,
        mask_id=MASK,
    )
    assert out.shape == (2, 9) and (out != MASK).all()


def test_hf_style_output_with_logits_attribute() -> None:
    class Out:
        def __init__(self, logits):
            self.logits = logits

    model = tiny_model()
    x = prompts(2, 5)
    wrapped = generate(lambda ids: Out(model(ids)), x, gen_length=4, steps=2, block_length=2, mask_id=MASK)
    assert torch.equal(wrapped, generate(model, x, gen_length=4, steps=2, block_length=2, mask_id=MASK))


def test_mask_token_inside_vocab_is_never_committed() -> None:
    table = torch.zeros(8, 10)
    table[:, 7] = 10.0  # the mask id is the most likely token everywhere
    out = generate(FixedLogits(table), torch.tensor([[1, 2, 3]]), gen_length=5, steps=5, block_length=5, mask_id=7)
    assert (out[:, 3:] != 7).all()


def test_confidence_is_the_softmax_over_all_columns_mask_included() -> None:
    # position 3 predicts token 1 with p = e^2.5 / (e^2.5 + e^3 + 8) = 0.30 over all 10 columns, position 4 token 2
    # with p = e^2 / (e^2 + 9) = 0.45; renormalised without the mask column (7), position 3 would have 0.60.
    table = torch.zeros(5, 10)
    table[3, 1], table[3, 7] = 2.5, 3.0
    table[4, 2] = 2.0
    out = generate(FixedLogits(table), torch.tensor([[1, 2, 3]]), gen_length=2, steps=2, block_length=2, mask_id=7,
                   return_history=True)  # fmt: skip
    assert out.sequences[0, 3:].tolist() == [1, 2]
    assert out.commit_step[0, 3:].tolist() == [1, 0]  # position 4 is the more confident one


# ----------------------------------------------------------------------------------------------- EOS


def test_fill_after_eos_fills_and_saves_model_calls() -> None:
    eos = 9
    table = torch.zeros(9, 20)
    table[3:, 1] = 2.0  # token 1 everywhere ...
    table[5, eos] = 8.0  # ... except a confident EOS at generated position 2
    plain_model, eos_model = FixedLogits(table), FixedLogits(table)
    kwargs = dict(gen_length=6, steps=6, block_length=6, mask_id=MASK, return_history=True)
    plain = generate(plain_model, torch.tensor([[4, 5, 6]]), eos_id=eos, **kwargs)
    filled = generate(eos_model, torch.tensor([[4, 5, 6]]), eos_id=eos, fill_after_eos=True, **kwargs)
    assert plain.sequences[0, 3:].tolist() == [1, 1, eos, 1, 1, 1]  # eos_id alone has no effect
    assert filled.sequences[0, 3:].tolist() == [1, 1, eos, eos, eos, eos]
    assert filled.commit_step[0, 5:].tolist() == [0, 0, 0, 0]
    assert len(plain_model.calls) == 6 and len(eos_model.calls) == 3


def test_fill_after_eos_skips_later_blocks() -> None:
    eos = 9
    table = torch.zeros(11, 20)
    table[:, 1] = 1.0
    table[3, eos] = 8.0  # first generated position: EOS
    model = FixedLogits(table)
    out = generate(
        model,
        torch.tensor([[4, 5, 6]]),
        gen_length=8,
        steps=8,
        block_length=2,
        mask_id=MASK,
        eos_id=eos,
        fill_after_eos=True,
    )
    assert out[0, 3:].tolist() == [eos] * 8
    assert len(model.calls) == 1


# ----------------------------------------------------------------------------------------------- randomness


def test_gumbel_max_samples_from_the_tempered_softmax() -> None:
    probs = torch.tensor([0.2, 0.3, 0.5])
    for temperature in (1.0, 0.5):
        model = FixedLogits(probs.log().expand(2004, 3))
        g = torch.Generator().manual_seed(123)
        out = generate(
            model,
            torch.tensor([[0, 1]] * 2),
            gen_length=2000,
            steps=1,
            block_length=2000,
            mask_id=3,
            temperature=temperature,
            generator=g,
        )
        counts = torch.bincount(out[:, 2:].flatten(), minlength=3).double()
        target = probs ** (1 / temperature)
        expected = counts.sum() * target / target.sum()
        chi2 = ((counts - expected) ** 2 / expected).sum().item()
        assert chi2 < 13.8, (temperature, counts, expected)  # chi-square, 2 dof, p = 0.001
    # the check can fail: greedy puts every draw on the mode
    counts = torch.bincount(gumbel_argmax(probs.log().expand(1000, 3), 0.0), minlength=3)
    assert counts.tolist() == [0, 0, 1000]


@pytest.mark.parametrize("remasking", ["random", "low_confidence"])
def test_sampling_is_reproducible_with_a_generator(remasking: str) -> None:
    model, x = tiny_model(), prompts(2, 5)
    kwargs = dict(
        gen_length=8, steps=4, block_length=4, mask_id=MASK, remasking=remasking, temperature=1.0, return_history=True
    )
    a = generate(model, x, generator=torch.Generator().manual_seed(7), **kwargs)
    b = generate(model, x, generator=torch.Generator().manual_seed(7), **kwargs)
    c = generate(model, x, generator=torch.Generator().manual_seed(8), **kwargs)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.commit_step, b.commit_step)
    assert not (torch.equal(a.sequences, c.sequences) and torch.equal(a.commit_step, c.commit_step))


def test_random_remasking_ignores_confidence() -> None:
    sharpness = [float(s) for s in range(8, 0, -1)]  # confidence decreasing with position
    model = FixedLogits(peaked_table(10, 20, sharpness, offset=2))
    kwargs = dict(gen_length=8, steps=8, block_length=8, mask_id=MASK, return_history=True)
    greedy = generate(model, torch.tensor([[0, 1]]), **kwargs)
    assert greedy.commit_step[0, 2:].tolist() == list(range(8))
    orders = {
        tuple(
            generate(
                model, torch.tensor([[0, 1]]), remasking="random", generator=torch.Generator().manual_seed(s), **kwargs
            )
            .commit_step[0, 2:]
            .tolist()
        )
        for s in range(5)
    }
    assert len(orders) > 1 and all(sorted(o) == list(range(8)) for o in orders)


# ----------------------------------------------------------------------------------------------- prompt cache


def test_prompt_cache_is_exact_for_a_causal_model_and_single_step_blocks() -> None:
    x, mask = prompts(2, 6), torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6])
    kwargs = dict(gen_length=8, steps=8, block_length=4, mask_id=MASK, cfg_scale=0.5)
    causal = tiny_model(causal=True)
    # a causal prefix never sees the tokens after it: caching it changes nothing
    assert torch.equal(generate(causal, x, mask, prompt_cache=True, **kwargs), generate(causal, x, mask, **kwargs))
    bidirectional = tiny_model()
    one_step = dict(kwargs, steps=2)  # every step is a block's first step: a full, exact forward
    exact = generate(bidirectional, x, mask, **one_step)
    assert torch.equal(generate(bidirectional, x, mask, prompt_cache=True, **one_step), exact)


def test_prompt_cache_runs_only_the_suffix_after_the_first_step() -> None:
    model = tiny_model()
    lengths = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def new_kv_cache(self):
            return model.new_kv_cache()

        def forward(self, input_ids, attention_mask=None, cache=None):
            lengths.append(input_ids.shape[1])
            return model(input_ids, attention_mask, cache=cache)

    out = generate(Recorder(), prompts(2, 5), gen_length=8, steps=4, block_length=4, mask_id=MASK, prompt_cache=True)
    assert lengths == [13, 8, 13, 4]
    assert (out != MASK).all()


# ----------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(gen_length=10, block_length=4, steps=4), "gen_length=10 must be divisible by block_length=4"),
        (dict(gen_length=8, block_length=4, steps=3), "steps=3 must be divisible by the number of blocks"),
        (dict(gen_length=8, block_length=4, steps=0), "steps must be a positive integer"),
        (dict(gen_length=0, block_length=4, steps=4), "gen_length must be a positive integer"),
        (dict(remasking="entropy"), "unknown remasking strategy 'entropy'"),
        (dict(temperature=-1.0), "temperature must be >= 0"),
        (dict(cfg_scale=-0.5), "cfg_scale must be >= 0"),
        (dict(fill_after_eos=True), "fill_after_eos=True needs eos_id"),
        (dict(prompt_cache=True), "prompt_cache=True needs a model with KV-cache support"),
        (dict(attention_mask=torch.ones(2, 4)), "attention_mask shape"),
        (dict(attention_mask=torch.tensor([[1, 1, 1, 0, 0]] * 2)), "left-padded"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    args = dict(gen_length=8, block_length=4, steps=4, mask_id=MASK) | kwargs
    model = FixedLogits(torch.zeros(20, 50))
    with pytest.raises(ValueError, match=message):
        generate(model, prompts(2, 5), **args)
    assert not model.calls


# ----------------------------------------------------------------------------------------------- EOS options


class RowLogits:
    """A fake model: logits[b, i] = table[b, i] (one fixed table per row), whatever the tokens."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table  # [B, T, V]

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.table[:, : input_ids.shape[1]].clone()


EOS, EOT = 9, 10


def eos_favouring_table(length: int = 12, vocab: int = 20) -> torch.Tensor:
    """Every position's most likely token is EOS (logit 6), then token 1 (logit 4), then token 2 (logit 2)."""
    table = torch.zeros(length, vocab)
    table[:, EOS], table[:, 1], table[:, 2] = 6.0, 4.0, 2.0
    return table


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_logits_eos_inf_never_generates_eos(temperature: float) -> None:
    model = FixedLogits(eos_favouring_table(36, 20))
    kwargs = dict(gen_length=32, steps=16, block_length=8, mask_id=MASK, eos_id=EOS, temperature=temperature)
    gen = torch.Generator().manual_seed(0)
    plain = generate(model, prompts(3, 4), generator=gen, **kwargs)
    assert (plain[:, 4:] == EOS).float().mean() > 0.5  # the check can fail: EOS is this model's favourite
    out = generate(model, prompts(3, 4), logits_eos_inf=True, generator=torch.Generator().manual_seed(0), **kwargs)
    assert not (out[:, 4:] == EOS).any() and not (out[:, 4:] == MASK).any()
    if temperature == 0:
        assert (out[:, 4:] == 1).all()  # the runner-up, once EOS is gone


def deferral_table() -> torch.Tensor:
    """Two rows, prompt of 2, one block of 6: the confident EOS/EoT candidates sit between weak plain tokens."""
    table = torch.zeros(2, 8, 20)
    rows = [[1, EOS, 2, EOT, 3, EOS], [EOT, 4, EOS, 5, EOS, 6]]  # each position's argmax
    strength = [[1.0, 9.0, 2.0, 8.0, 3.0, 7.0], [9.0, 1.5, 8.0, 2.5, 7.0, 3.5]]
    for b, (tokens, logits) in enumerate(zip(rows, strength, strict=True)):
        for j, (token, s) in enumerate(zip(tokens, logits, strict=True)):
            table[b, 2 + j, token] = s
    return table


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_confidence_eos_eot_inf_commits_eos_and_eot_last_with_full_quotas(remasking: str) -> None:
    model = RowLogits(deferral_table())
    x = torch.tensor([[0, 1], [2, 3]])
    kwargs = dict(gen_length=6, steps=3, block_length=6, mask_id=MASK, remasking=remasking, return_history=True)
    kwargs |= dict(eos_id=EOS, generator=torch.Generator().manual_seed(0))
    out = generate(model, x, confidence_eos_eot_inf=True, eot_id=EOT, **kwargs)
    generated, steps = out.sequences[:, 2:], out.commit_step[:, 2:]
    ends = (generated == EOS) | (generated == EOT)
    assert ends.sum(dim=1).tolist() == [3, 3]  # the model's argmax tokens are still what is committed
    for b in range(2):
        assert steps[b][~ends[b]].max() <= steps[b][ends[b]].min(), (b, steps[b])
        assert torch.bincount(steps[b], minlength=3).tolist() == [2, 2, 2]  # every step commits its quota
    if remasking == "low_confidence":  # the plain tokens by confidence, then the EOS/EoT ones by index
        assert steps.tolist() == [[1, 1, 0, 2, 0, 2], [1, 1, 2, 0, 2, 0]]
        plain = generate(model, x, **kwargs)
        assert plain.commit_step[:, 2:].tolist() == [[2, 0, 2, 0, 1, 1], [0, 2, 0, 2, 1, 1]]  # EOS/EoT first


def test_confidence_eos_eot_inf_without_eot_id_defers_eos_only() -> None:
    model = RowLogits(deferral_table())
    kwargs = dict(gen_length=6, steps=6, block_length=6, mask_id=MASK, eos_id=EOS, return_history=True)
    out = generate(model, torch.tensor([[0, 1], [2, 3]]), confidence_eos_eot_inf=True, **kwargs)
    eos = out.sequences[:, 2:] == EOS
    steps = out.commit_step[:, 2:]
    assert steps[0, 3] == 0 and steps[1, 0] == 0  # the most confident EoT is not deferred
    for b in range(2):
        assert steps[b][~eos[b]].max() < steps[b][eos[b]].min()


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
@pytest.mark.parametrize("prompt_cache", [False, True])
def test_eos_options_off_leave_the_output_unchanged(remasking: str, prompt_cache: bool) -> None:
    model, x = tiny_model(), prompts(2, 5)
    kwargs = dict(gen_length=8, steps=4, block_length=4, mask_id=MASK, remasking=remasking, temperature=1.0)
    kwargs |= dict(prompt_cache=prompt_cache, return_history=True)
    before = generate(model, x, generator=torch.Generator().manual_seed(5), **kwargs)
    off = generate(
        model,
        x,
        eos_id=3,
        eot_id=4,
        logits_eos_inf=False,
        confidence_eos_eot_inf=False,
        generator=torch.Generator().manual_seed(5),
        **kwargs,
    )
    assert torch.equal(before.sequences, off.sequences) and torch.equal(before.commit_step, off.commit_step)
    greedy = dict(gen_length=8, steps=4, block_length=4, mask_id=MASK)
    assert torch.equal(generate(model, x, eos_id=3, eot_id=4, **greedy), reference_generate(model, x, **greedy))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(logits_eos_inf=True), "logits_eos_inf=True needs eos_id"),
        (dict(confidence_eos_eot_inf=True, eot_id=4), "confidence_eos_eot_inf=True needs eos_id"),
        (dict(logits_eos_inf=True, eos_id=50), r"eos_id=50 is not a column of the model's logits \(vocabulary of 50\)"),
        (dict(confidence_eos_eot_inf=True, eos_id=3, eot_id=-1), "eot_id=-1 is not a column"),
    ],
)
def test_eos_options_need_valid_token_ids(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(FixedLogits(torch.zeros(20, 50)), prompts(2, 5), gen_length=8, block_length=4, steps=4, mask_id=MASK,
                 **kwargs)  # fmt: skip
