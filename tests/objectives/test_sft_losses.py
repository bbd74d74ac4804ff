"""The SFT losses: prompt never masked, answer masked at rate p, hand-computed values for each normalisation."""

from __future__ import annotations

import math

import pytest
import torch

from llada_lightning.objectives import arm_sft_loss, sft_forward_process, sft_loss


def _gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_prompt_is_never_masked_and_answers_are_masked_at_rate_p() -> None:
    batch, length, mask_id = 400, 50, 99
    x = torch.randint(0, 90, (batch, length))
    prompt = torch.randint(0, 30, (batch,))
    t = torch.rand(batch, generator=_gen(1))
    noisy, masked, p = sft_forward_process(x, prompt, t, eps=1e-3, mask_id=mask_id, generator=_gen(2))
    positions = torch.arange(length)[None, :]
    is_prompt = positions < prompt[:, None]
    assert not masked[is_prompt].any()
    assert torch.equal(noisy[is_prompt], x[is_prompt])
    assert torch.equal(noisy == mask_id, masked)  # x never holds the mask id here
    assert torch.allclose(p, (1 - 1e-3) * t + 1e-3)
    # the masked fraction of answer tokens matches p, pooled over rows in bins of p
    answer = ~is_prompt
    for lo, hi in ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0)):
        rows = (p >= lo) & (p < hi)
        n = answer[rows].sum()
        observed = masked[rows][answer[rows]].float().mean()
        expected = (p[rows, None].expand(-1, length)[answer[rows]]).mean()
        assert abs(float(observed - expected)) < 4 * math.sqrt(0.25 / float(n))


def test_same_generator_state_same_mask() -> None:
    x = torch.randint(0, 50, (4, 20))
    prompt = torch.tensor([3, 5, 0, 19])
    t = torch.tensor([0.1, 0.5, 0.9, 0.3])
    a = sft_forward_process(x, prompt, t, eps=1e-3, mask_id=60, generator=_gen(7))
    b = sft_forward_process(x, prompt, t, eps=1e-3, mask_id=60, generator=_gen(7))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def _tiny_example() -> tuple[torch.Tensor, ...]:
    """Two rows of length 4 over a vocabulary of 3, with known log-probabilities."""
    input_ids = torch.tensor([[0, 1, 2, 2], [1, 0, 0, 2]])
    prompt = torch.tensor([1, 2])
    masked = torch.tensor([[False, True, False, True], [False, False, True, True]])
    p = torch.tensor([0.5, 0.25])
    logits = torch.log(
        torch.tensor(
            [
                [[0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4], [0.25, 0.25, 0.5]],
                [[0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]],
            ]
        )
    )
    return logits, input_ids, masked, p, prompt


def test_sft_loss_equals_hand_computed_values_for_each_normalisation() -> None:
    logits, ids, masked, p, prompt = _tiny_example()
    # row 0: masked positions 1 (target 1, prob .6) and 3 (target 2, prob .5), p = .5, answer length 4 - 1 = 3
    row0 = (-math.log(0.6) - math.log(0.5)) / 0.5
    # row 1: masked positions 2 (target 0, prob .7) and 3 (target 2, prob .8), p = .25, answer length 4 - 2 = 2
    row1 = (-math.log(0.7) - math.log(0.8)) / 0.25
    expected = {
        "sample": (row0 / 3 + row1 / 2) / 2,  # LLaDA GUIDELINES.md
        "batch": (row0 + row1) / (2 * 4 - 3),  # SMDM: / (B * T - sum(prompt_len))
        "token": (row0 + row1) / 4,  # 4 masked answer tokens
    }
    for normalization, value in expected.items():
        got = sft_loss(logits, ids, masked, p, prompt, normalization=normalization)
        assert got.item() == pytest.approx(value, rel=1e-6), normalization
    assert sft_loss(logits, ids, masked, p, prompt).item() == pytest.approx(expected["sample"], rel=1e-6)


def test_sft_loss_ignores_masked_prompt_positions_it_is_not_given() -> None:
    """Only `masked` decides what is scored: CE at an unmasked position never enters."""
    logits, ids, masked, p, prompt = _tiny_example()
    changed = logits.clone()
    changed[0, 0] = torch.tensor([5.0, -5.0, 0.0])  # an unmasked (prompt) position
    changed[1, 1] = torch.tensor([-9.0, 9.0, 0.0])
    assert sft_loss(changed, ids, masked, p, prompt).item() == sft_loss(logits, ids, masked, p, prompt).item()


def test_padding_eos_is_trained_on() -> None:
    """An EOS padding position of the answer gets gradient when masked (it counts as an answer token)."""
    eos = 0
    ids = torch.tensor([[5, 6, 7, eos, eos, eos]])  # prompt [5, 6], answer [7, EOS], padding EOS EOS
    prompt = torch.tensor([2])
    logits = torch.zeros(1, 6, 8, requires_grad=True)
    masked = torch.tensor([[False, False, False, False, True, True]])  # only padding masked
    loss = sft_loss(logits, ids, masked, torch.tensor([0.5]), prompt)
    loss.backward()
    assert logits.grad is not None and logits.grad[0, 4:].abs().sum() > 0
    assert loss.item() == pytest.approx(2 * math.log(8) / 0.5 / 4)  # answer length with padding: 6 - 2 = 4


def test_arm_sft_loss_ignores_prompt_tokens() -> None:
    torch.manual_seed(0)
    ids = torch.randint(0, 10, (3, 7))
    prompt = torch.tensor([2, 4, 6])
    logits = torch.randn(3, 7, 10)
    base = arm_sft_loss(logits, ids, prompt)
    changed = logits.clone()
    for row, n in enumerate(prompt.tolist()):
        changed[row, : n - 1] = torch.randn(n - 1, 10) * 10  # the logits predicting prompt tokens 1..n-1
    assert arm_sft_loss(changed, ids, prompt).item() == pytest.approx(base.item(), abs=1e-6)
    changed[0, 1, ids[0, 2]] += 3.0  # predicts ids[0, 2], the first answer token of row 0: the loss changes
    assert arm_sft_loss(changed, ids, prompt).item() != pytest.approx(base.item(), abs=1e-6)
    # hand value: per row, mean CE over its answer tokens, then the batch mean
    logp = torch.log_softmax(logits, dim=-1)
    rows = [-torch.stack([logp[r, i - 1, ids[r, i]] for i in range(int(prompt[r]), 7)]).mean() for r in range(3)]
    assert base.item() == pytest.approx(torch.stack(rows).mean().item(), rel=1e-6)


def test_unknown_normalisation_is_refused() -> None:
    logits, ids, masked, p, prompt = _tiny_example()
    with pytest.raises(ValueError, match="normalization"):
        sft_loss(logits, ids, masked, p, prompt, normalization="mean")


def test_sft_loss_matches_the_guidelines_formula_with_per_position_p() -> None:
    """LLaDA GUIDELINES.md computes with p_mask repeated over positions and [B, 1] lengths: the same number."""
    torch.manual_seed(3)
    batch, length, vocab, mask_id = 5, 12, 20, 19
    ids = torch.randint(0, 19, (batch, length))
    prompt = torch.randint(1, 8, (batch,))
    t = torch.rand(batch)
    noisy, masked, p = sft_forward_process(ids, prompt, t, eps=1e-3, mask_id=mask_id, generator=_gen(4))
    logits = torch.randn(batch, length, vocab)
    p_full = p[:, None].repeat(1, length)
    answer_lengths = (length - prompt)[:, None].repeat(1, length)
    idx = noisy == mask_id
    token_loss = torch.nn.functional.cross_entropy(logits[idx], ids[idx], reduction="none") / p_full[idx]
    guideline = torch.sum(token_loss / answer_lengths[idx]) / batch
    assert sft_loss(logits, ids, masked, p, prompt).item() == pytest.approx(guideline.item(), rel=1e-5)
    assert sft_loss(logits, ids, masked, p_full, prompt[:, None]).item() == pytest.approx(guideline.item(), rel=1e-5)
