"""Sampler details that property tests miss, checked against LLaDA's `generate.py` (ML-GSAI/LLaDA):

- low-confidence remasking ranks by softmax(logits)[x0], the un-noised, un-tempered logits, even though the
  candidate x0 is drawn from softmax(logits / T) (generate.py: `p = F.softmax(logits)` after `add_gumbel_noise`);
- the Gumbel-max draw is LLaDA's `add_gumbel_noise`, float64 uniforms included (arXiv 2409.02908: low-precision
  Gumbel noise degrades generation).
"""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import TINY, FixedLogits

from llada_lightning.sampling import generate, gumbel_argmax

MASK = TINY.mask_id  # 50 == vocab_size: not a head column


def two_position_table(prompt_len: int, vocab: int = 50) -> torch.Tensor:
    """Fixed logits for two generated positions whose confidence order flips with the temperature.

    Position B (generated index 0) predicts token 3 at logit 0 with 40 rivals at -16; position A (index 1) predicts
    token 7 at 0 with one rival at -13.2; every other column is -inf. At temperature 1:
        1 - p_A = 1 / (1 + e^13.2) = 1.9e-6,   1 - p_B = 40 / (40 + e^16) = 4.5e-6   -> A is the more confident;
    with the logits divided by T = 0.5 the order flips:
        1 - p_A = 3.4e-12,                     1 - p_B = 5.1e-13                     -> B would be.
    The candidates are fixed in practice: a rival beats the top token under Gumbel-max at T = 0.5 with probability
    about e^-26.4 (A) and 40 e^-32 (B), below 1e-11.
    """
    table = torch.full((prompt_len + 2, vocab), -math.inf)
    b, a = prompt_len, prompt_len + 1
    table[b, 3] = 0.0
    table[b, 10:50] = -16.0
    table[a, 7] = 0.0
    table[a, 8] = -13.2
    return table


def test_low_confidence_ranks_candidates_by_the_untempered_softmax() -> None:
    prompt = torch.tensor([[1, 2]])
    table = two_position_table(prompt.shape[1])
    temperature = 0.5

    def first_committed(scale: float) -> str:
        """Which of B (index 0) and A (index 1) has the larger softmax(logits / scale)[top]: computed by hand."""
        top = torch.softmax(table[2:].double() / scale, dim=-1).max(dim=-1).values
        assert top[0] != top[1]
        return "BA"[int(top[1] > top[0])]

    # the test has power: the two rules disagree on this table
    assert first_committed(1.0) == "A" and first_committed(temperature) == "B"
    for seed in range(3):
        out = generate(FixedLogits(table), prompt, gen_length=2, steps=2, block_length=2, mask_id=MASK,
                       temperature=temperature, generator=torch.Generator().manual_seed(seed),
                       return_history=True)  # fmt: skip
        assert out.sequences[0, 2:].tolist() == [3, 7]  # the candidates are the top tokens
        # A (index 1) first although ties go to the lower index: ranked by softmax(logits), not softmax(logits / T)
        steps = out.commit_step[0, 2:].tolist()
        assert steps == [1, 0], f"commit steps (B, A) = {steps}: ranked by softmax(logits / T), not softmax(logits)"


def llada_add_gumbel_noise(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """LLaDA generate.py `add_gumbel_noise`, verbatim but for the names: float64 logits and uniforms,
    exp(logits) / (-log u)^T (its argmax is a sample of softmax(logits / T))."""
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    noise = torch.rand_like(logits, dtype=torch.float64)
    gumbel_noise = (-torch.log(noise)) ** temperature
    return logits.exp() / gumbel_noise


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_gumbel_argmax_is_llada_add_gumbel_noise_with_float64_uniforms(temperature: float) -> None:
    """From the same RNG state our Gumbel-max picks exactly the tokens LLaDA's does: the same float64 uniforms
    (one per logit, in order), the same sample. Drawn from float32 uniforms instead, nearly every pick differs."""
    logits = 2 * torch.randn(3, 40, 50, generator=torch.Generator().manual_seed(0))  # |logits| < 12: exp is finite
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        ours = gumbel_argmax(logits, temperature)  # no generator: torch's global RNG, as rand_like uses
        torch.manual_seed(1234)
        reference = llada_add_gumbel_noise(logits, temperature).argmax(dim=-1)
    differ = (ours != reference).float().mean().item()
    assert differ == 0, f"{differ:.0%} of the picks differ from LLaDA's add_gumbel_noise on the same RNG state"
    # the comparison has power: samples vary (not all argmax), so different uniforms would give different picks
    assert (ours != logits.argmax(dim=-1)).float().mean() > 0.3
