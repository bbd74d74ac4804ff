"""Likelihood estimators against exact expectations (every mask of a short answer enumerated), and the ARM sum."""

from __future__ import annotations

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
    return build_model(CFG, causal=causal).eval()


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
    """-sum_{l=1..L} (1/L)(L/l)(1/C(L,l)) sum_{|M|=l} sum_{i in M} -log p(x_i | x_M masked) (LLaDA, Nie et al. 2025)."""
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


class MaskAware:
    """A toy model whose loss at each position tells whether that position was masked, so that an estimator scoring
    the wrong positions gets a different value. The target token (the prompt token, or the answer token) gets
    probability `visible_q` where the input shows a token and `masked_q[l - 1]` where it shows the mask, l being the
    number of masked tokens in the row; the other V - 1 tokens share the rest. So every masked token of a row costs
    exactly -log masked_q[l - 1] and every visible one -log visible_q, whatever the context. Records its inputs."""

    def __init__(self, prompt, answer, masked_q=(0.5,), visible_q: float = 0.01, vocab: int = 50) -> None:
        self.target = torch.cat((prompt, answer))
        self.masked_q = torch.tensor(masked_q, dtype=torch.float64)
        self.visible_q, self.vocab, self.inputs = visible_q, vocab, []

    def __call__(self, input_ids):
        self.inputs.append(input_ids.clone())
        masked = input_ids == MASK
        count = masked.sum(dim=1, keepdim=True).clamp(1, len(self.masked_q))
        q = torch.where(masked, self.masked_q[count - 1].expand_as(masked), self.visible_q)  # [B, T]
        log_probs = ((1 - q) / (self.vocab - 1)).log()[..., None].repeat(1, 1, self.vocab)
        log_probs.scatter_(-1, self.target.expand_as(input_ids)[..., None], q.log()[..., None])
        return log_probs.float()


def masked_counts(model) -> torch.Tensor:
    """[num_draws] number of masked answer tokens in every draw the model saw (its recorded inputs)."""
    return torch.cat([(batch[:, len(PROMPT) :] == MASK).sum(dim=1) for batch in model.inputs])


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


@pytest.mark.parametrize("eps", [1e-3, 0.25])
def test_continuous_estimator_matches_exact_enumeration(eps: float) -> None:
    # eps = 0.25: the weight 1/p and 1/t differ at every t (with 1/t the expectation is infinite)
    model = tiny()
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


def test_every_draw_scores_exactly_the_masked_answer_tokens() -> None:
    # each masked token costs -log 0.5 and each visible one -log 0.01, so a draw is -(L/l) * l * log 2 = -L log 2
    # whatever its l and mask; scoring the visible answer tokens too (or instead, or shifted by one) changes that
    model = MaskAware(PROMPT, ANSWER, masked_q=(0.5,))
    result = log_likelihood(
        model, PROMPT, ANSWER, mask_id=MASK, mc_num=24, batch_size=8, generator=torch.Generator().manual_seed(0)
    )
    assert set(masked_counts(model).tolist()) == {1, 2, 3, 4}  # the draws cover partial masks
    assert result.mean == pytest.approx(-4 * math.log(2), rel=1e-6)
    assert result.stderr < 1e-6


def test_discrete_estimate_is_exact_when_the_batch_is_a_multiple_of_the_answer_length() -> None:
    """A masked token costs -log q_l when l answer tokens are masked. Then a draw is -(L/l) * l * (-log q_l)
    = L log q_l, and the expectation (l uniform on {1..L}, LLaDA `get_log_likelihood.py`) is sum_l log q_l.
    A batch of b = 2L draws stratified in l holds every l exactly twice, so each batch's mean, and the estimate,
    is that expectation with no Monte Carlo error. LLaDA's rounded stratification
    (`torch.round(torch.linspace(k, k + (b-1) L/b, b))`, half to even) gives this batch l = {1, 2, 2, 2, 3, 4, 4, 4}
    (for k = 1) and a biased estimate."""
    q = (0.9, 0.5, 0.2, 0.05)
    model = MaskAware(PROMPT, ANSWER, masked_q=q)
    result = log_likelihood(
        model, PROMPT, ANSWER, mask_id=MASK, mc_num=32, batch_size=8, generator=torch.Generator().manual_seed(0)
    )
    exact = sum(math.log(x) for x in q)
    assert result.mean == pytest.approx(exact, rel=1e-6), f"estimate {result.mean} != expectation {exact}"


@pytest.mark.parametrize(("length", "batch"), [(4, 8), (4, 4), (4, 6), (3, 8), (5, 2), (6, 9), (2, 7)])
def test_l_is_stratified_evenly_within_every_batch(length: int, batch: int) -> None:
    """Within each batch of draws every l in {1..L} occurs floor(b/L) or ceil(b/L) times (exactly b/L when L
    divides b): the point of stratifying. LLaDA's rounding does not: at (L, b) = (4, 8) its batches hold l = 2 and 4
    three times each and l = 1 and 3 once."""
    answer = torch.arange(10, 10 + length)
    model = Recorder()
    log_likelihood(model, PROMPT, answer, mask_id=MASK, mc_num=batch * 40, batch_size=batch,
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    low, high = batch // length, -(-batch // length)
    for draws in model.inputs:
        counts = torch.bincount((draws[:, len(PROMPT) :] == MASK).sum(dim=1), minlength=length + 1)
        assert counts[0] == 0 and len(counts) == length + 1, f"l outside 1..{length}: {counts.tolist()}"
        assert all(low <= c <= high for c in counts[1:].tolist()), f"counts of l = 1..{length}: {counts[1:].tolist()}"


def test_each_draw_of_a_batch_has_a_uniform_l() -> None:
    """The marginal of l at every draw position j of a batch is uniform on {1..L} (what makes each draw, and so the
    mean, unbiased). Pearson chi-square over 500 batches of b = 8 draws, L = 4, summed over the 8 positions:
    chi2(24) exceeds 72.2 with probability 1e-6. With LLaDA's rounding the odd positions only ever get l = 2 or 4
    (k + j/2 is a half-integer and rounds to even), which alone makes the statistic about 4 * 500 = 2000."""
    length, batch, batches = 4, 8, 500
    model = Recorder()
    log_likelihood(model, PROMPT, ANSWER, mask_id=MASK, mc_num=batch * batches, batch_size=batch,
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    l = masked_counts(model).view(batches, batch)
    counts = torch.stack([torch.bincount(l[:, j], minlength=length + 1)[1:] for j in range(batch)]).double()
    expected = batches / length
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert counts.sum() == batch * batches
    assert chi2 < 72.2, f"chi-square {chi2:.1f} (24 dof); counts of l = 1..4 per draw position:\n{counts}"


def test_continuous_draws_match_a_hand_computed_reference() -> None:
    """One batch of 8 draws recomputed by hand in float64, as SMDM `evaluate_diff.py` (`_forward_process`,
    `_eval_target_nll_mc`: CE / p_mask): t_j = (u + j/8) mod 1 with u the generator's first float64 uniform (SMDM
    draws `u0` before the masks), p_j = (1 - eps) t_j + eps, draw_j = -(1/p_j) * sum over the masked answer tokens
    of -log p(x_i | x_t), the masks read from what the model saw. With this seed the smallest t is 0.029 and its
    draw has a masked token, where p/t - 1 = 0.033: weighting by 1/t instead of 1/p moves the mean by 1.3e-2
    relative; the tolerance is 1e-6 (the estimator's float32 cross-entropy agrees with this float64 one to ~1e-8)."""
    model, eps, batch = tiny(), 1e-3, 8
    answer = torch.tensor([5, 11, 29, 8, 40, 2, 17, 33, 21, 6, 14, 47])
    seen = []

    def recording(input_ids):
        seen.append(input_ids.clone())
        return model(input_ids)

    seed = 7
    gen = torch.Generator().manual_seed(seed)
    kwargs = dict(mask_id=MASK, mc_num=batch, batch_size=batch, method="continuous", eps=eps, generator=gen)
    result = log_likelihood(recording, PROMPT, answer, **kwargs)
    (noisy,) = seen
    u = torch.rand(1, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).item()
    t = [(u + j / batch) % 1.0 for j in range(batch)]
    p = [(1 - eps) * tj + eps for tj in t]
    masked = noisy[:, len(PROMPT) :] == MASK
    with torch.no_grad():
        log_probs = model(noisy)[:, len(PROMPT) :].double().log_softmax(-1)
    nll = -log_probs.gather(-1, answer.expand(batch, -1)[..., None]).squeeze(-1)
    sums = [(nll[j] * masked[j]).sum().item() for j in range(batch)]
    reference = sum(-s / pj for s, pj in zip(sums, p, strict=True)) / batch
    with_1_over_t = sum(-s / tj for s, tj in zip(sums, t, strict=True)) / batch
    assert masked[t.index(min(t))].any() and min(t) < 0.05
    assert abs(with_1_over_t / reference - 1) > 100 * 1e-6  # the tolerance below separates the two weights
    assert result.mean == pytest.approx(reference, rel=1e-6), f"{result.mean} != {reference} (1/t: {with_1_over_t})"


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
