"""Likelihood estimators against exact expectations (every mask of a short answer enumerated), and the ARM sum."""

from __future__ import annotations

import dataclasses
import itertools
import math
import pickle

import pytest
import torch

from llada_lightning.config import ModelConfig
from llada_lightning.likelihood import LogLikelihood, ar_log_likelihood, log_likelihood
from llada_lightning.models import build_model

CFG = ModelConfig(n_layers=1, n_heads=2, n_kv_heads=2, d_model=32, d_ff=64, vocab_size=50, max_seq_len=64, init_std=0.2)
MASK = CFG.mask_id
PROMPT = torch.tensor([3, 17, 42])
ANSWER = torch.tensor([5, 11, 29, 8])


def tiny(causal: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(dataclasses.replace(CFG, causal=causal)).eval()


@torch.no_grad()
def masked_ce_sums(model, prompt, answer) -> tuple[torch.Tensor, torch.Tensor]:
    """For every non-empty mask M of the answer: |M| and sum_{i in M} -log p(x_i | x with M masked)."""
    length = len(answer)
    masks = torch.tensor([m for m in itertools.product([False, True], repeat=length) if any(m)])
    seqs = torch.cat((prompt.repeat(len(masks), 1), torch.where(masks, MASK, answer)), dim=1)
    log_probs = model(seqs)[:, len(prompt) :].double().log_softmax(-1)
    nll = -log_probs.gather(-1, answer.expand(len(masks), -1)[..., None]).squeeze(-1)
    return masks.sum(1), (nll * masks).sum(1)


def exact_discrete(model, prompt, answer) -> float:
    """-sum_{l=1..L} (1/L)(L/l)(1/C(L,l)) sum_{|M|=l} sum_{i in M} -log p(x_i | x_M masked) (SPEC 3)."""
    sizes, sums = masked_ce_sums(model, prompt, answer)
    length = len(answer)
    weights = torch.tensor([1 / (l * math.comb(length, l)) for l in sizes.tolist()], dtype=torch.float64)
    return -(weights * sums).sum().item()


def exact_continuous(model, prompt, answer, eps: float) -> float:
    """E_t[-(1/p) sum_{i in M} CE], M ~ Bernoulli(p)^L, p = (1-eps)t + eps, t ~ U[0,1]: a mask of size k has
    weight c_k = int_0^1 p^(k-1) (1-p)^(L-k) dt = (1/(1-eps)) sum_j C(L-k, j) (-1)^j (1 - eps^(k+j)) / (k+j)."""
    sizes, sums = masked_ce_sums(model, prompt, answer)
    length = len(answer)

    def c(k: int) -> float:
        total = sum(
            math.comb(length - k, j) * (-1) ** j * (1 - eps ** (k + j)) / (k + j) for j in range(length - k + 1)
        )
        return total / (1 - eps)

    weights = torch.tensor([c(k) for k in sizes.tolist()], dtype=torch.float64)
    return -(weights * sums).sum().item()


class Recorder:
    """Uniform logits (every masked token costs log V) and a record of every input batch."""

    def __init__(self, vocab: int = 50) -> None:
        self.vocab, self.inputs = vocab, []

    def __call__(self, input_ids):
        self.inputs.append(input_ids.clone())
        return torch.zeros(*input_ids.shape, self.vocab)


# ----------------------------------------------------------------------------------------------- unbiasedness


def test_discrete_estimator_matches_exact_enumeration() -> None:
    model = tiny()
    exact = exact_discrete(model, PROMPT, ANSWER)
    result = log_likelihood(
        model, PROMPT, ANSWER, mask_id=MASK, mc_num=2048, batch_size=256, generator=torch.Generator().manual_seed(0)
    )
    print(f"discrete: estimate {result.mean:.4f} +- {result.stderr:.4f}, exact {exact:.4f}")
    assert result.num_draws == 2048
    assert abs(result.mean - exact) < 4 * result.stderr
    # the test has power: an unweighted estimator (weight 1 instead of L/l) would sit far outside 4 stderr
    sizes, sums = masked_ce_sums(model, PROMPT, ANSWER)
    length = len(ANSWER)
    unweighted = -sum(s / (length * math.comb(length, k)) for k, s in zip(sizes.tolist(), sums.tolist(), strict=True))
    assert abs(unweighted - exact) > 10 * result.stderr


def test_continuous_estimator_matches_exact_enumeration() -> None:
    model = tiny()
    eps = 1e-3
    exact = exact_continuous(model, PROMPT, ANSWER, eps)
    result = log_likelihood(
        model,
        PROMPT,
        ANSWER,
        mask_id=MASK,
        mc_num=4096,
        batch_size=512,
        method="continuous",
        eps=eps,
        generator=torch.Generator().manual_seed(1),
    )
    print(f"continuous: estimate {result.mean:.4f} +- {result.stderr:.4f}, exact {exact:.4f}")
    assert abs(result.mean - exact) < 4 * result.stderr
    # with eps = 0 both estimators have the same expectation: int_0^1 p^(k-1) (1-p)^(L-k) dp = 1 / (k C(L, k))
    assert exact_continuous(model, PROMPT, ANSWER, 0.0) == pytest.approx(
        exact_discrete(model, PROMPT, ANSWER), rel=1e-9
    )


def test_single_token_answer_is_exact_in_one_draw() -> None:
    model = tiny()
    answer = torch.tensor([7])
    with torch.no_grad():
        logits = model(torch.cat((PROMPT, torch.tensor([MASK])))[None])[0, -1]
    expected = logits.double().log_softmax(-1)[7].item()
    result = log_likelihood(model, PROMPT, answer, mask_id=MASK, mc_num=4, batch_size=4)
    assert result.mean == pytest.approx(expected, rel=1e-6) and result.stderr == 0.0


def test_result_is_the_estimate_as_a_float_with_its_error() -> None:
    result = log_likelihood(tiny(), PROMPT, ANSWER, mask_id=MASK, mc_num=64, batch_size=16,
                            generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert isinstance(result, float) and float(result) == result.mean
    assert abs(result - result.mean) == 0 and result < 0  # arithmetic and comparisons use the estimate
    assert result.stderr > 0 and result.num_draws == 64
    assert pickle.loads(pickle.dumps(result)).stderr == result.stderr


# ----------------------------------------------------------------------------------------------- masks and weights


def test_prompt_never_masked_and_l_stratified() -> None:
    model = Recorder()
    result = log_likelihood(
        model, PROMPT, ANSWER, mask_id=MASK, mc_num=12, batch_size=4, generator=torch.Generator().manual_seed(0)
    )
    assert len(model.inputs) == 3
    for batch in model.inputs:
        assert batch.shape == (4, 7)
        assert torch.equal(batch[:, :3], PROMPT.expand(4, -1))  # prompt intact in every draw
        answer = batch[:, 3:]
        masked = answer == MASK
        assert torch.equal(answer[~masked], ANSWER.expand(4, -1)[~masked])  # unmasked answer tokens unchanged
        assert sorted(masked.sum(1).tolist()) == [1, 2, 3, 4]  # batch of L draws: every l once
    # uniform logits: each masked token costs log V, so every draw is -(L/l) * l * log V = -L log V exactly
    assert result.mean == pytest.approx(-4 * math.log(50)) and result.stderr == pytest.approx(0, abs=1e-12)
    assert float(result) == result.mean and isinstance(result, LogLikelihood)


def test_continuous_masks_and_weights() -> None:
    model = Recorder()
    result = log_likelihood(
        model,
        torch.tensor([], dtype=torch.long),
        ANSWER,
        mask_id=MASK,
        mc_num=4000,
        batch_size=1000,
        method="continuous",
        generator=torch.Generator().manual_seed(0),
    )
    fraction = torch.cat([(b == MASK).float().mean(1) for b in model.inputs]).mean().item()
    assert fraction == pytest.approx(0.5, abs=0.02)  # E[p] = 1/2 with antithetic t
    assert result.mean == pytest.approx(-4 * math.log(50), abs=4 * result.stderr)  # E[|M| / p] = L


def test_cfg_masks_the_prompt_only_in_the_unconditional_half() -> None:
    model = Recorder()
    log_likelihood(model, PROMPT, ANSWER, mask_id=MASK, mc_num=4, batch_size=4, cfg_scale=1.0)
    (batch,) = model.inputs
    assert batch.shape == (8, 7)
    assert torch.equal(batch[:4, :3], PROMPT.expand(4, -1)) and (batch[4:, :3] == MASK).all()
    assert torch.equal(batch[:4, 3:], batch[4:, 3:])


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        log_likelihood(Recorder(), PROMPT, ANSWER, mask_id=MASK, method="exact")
    with pytest.raises(ValueError, match="1-D"):
        log_likelihood(Recorder(), PROMPT[None], ANSWER, mask_id=MASK)
    with pytest.raises(ValueError, match="empty"):
        log_likelihood(Recorder(), PROMPT, ANSWER[:0], mask_id=MASK)
    with pytest.raises(ValueError, match="cfg_scale must be >= 0"):
        log_likelihood(Recorder(), PROMPT, ANSWER, mask_id=MASK, cfg_scale=-1.0)


# ----------------------------------------------------------------------------------------------- ARM


def test_ar_log_likelihood_equals_hand_computed_sum() -> None:
    table = torch.randn(10, 10, generator=torch.Generator().manual_seed(0))

    def bigram(ids):  # p(x_i | x_<i) = softmax(table[x_{i-1}])
        return table[ids]

    prompt, answer = torch.tensor([1, 4]), torch.tensor([7, 2, 9])
    log_p = table.double().log_softmax(-1)
    expected = log_p[4, 7] + log_p[7, 2] + log_p[2, 9]
    result = ar_log_likelihood(bigram, prompt, answer)
    assert result.mean == pytest.approx(expected.item(), rel=1e-9) and result.stderr == 0.0


@torch.no_grad()
def test_ar_log_likelihood_matches_prefix_by_prefix_on_a_transformer() -> None:
    model = tiny(causal=True)
    seq = torch.cat((PROMPT, ANSWER))
    expected = sum(
        model(seq[None, :i])[0, -1].double().log_softmax(-1)[seq[i]].item() for i in range(len(PROMPT), len(seq))
    )
    assert float(ar_log_likelihood(model, PROMPT, ANSWER)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="causal"):
        ar_log_likelihood(tiny(causal=False), PROMPT, ANSWER)
    with pytest.raises(ValueError, match="non-empty prompt"):
        ar_log_likelihood(model, PROMPT[:0], ANSWER)
