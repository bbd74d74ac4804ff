"""Conditional log-likelihood of an answer given a prompt: Monte Carlo lower bounds for masked diffusion models
(LLaDA `get_log_likelihood` in `eval_llada.py`; SMDM `evaluate_diff.py`) and the exact value for an ARM.

Discrete (LLaDA), one draw for an answer of length L:
    l ~ U{1..L}; M = l answer positions uniformly at random (the prompt is never masked)
    estimate = -(L / l) * sum_{i in M} CE(logits_i, x_i)            (logits of the sequence with M masked)
    E[estimate] = -sum_{l=1..L} (1/l) E_{|M|=l}[sum_{i in M} -log p(x_i | x_unmasked)] <= log p(answer | prompt)
Continuous (SMDM): t antithetic over a batch, p = (1 - eps) t + eps, each answer token masked w.p. p, weight 1/p.

Both return `LogLikelihood(mean, stderr, num_draws)`, a float subclass: the value itself (or `result.mean`) is the
log-likelihood estimate (nats, summed over the answer, not length-normalised); `stderr` the Monte Carlo standard error.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Generator, Tensor

from llada_lightning.sampling.common import Model, call_model, check_cfg_scale, guided_logits

METHODS = ("discrete", "continuous")


class LogLikelihood(float):
    """A log-likelihood in nats (summed over the answer tokens) that carries its Monte Carlo standard error.

    It is a float (the estimate itself: arithmetic, comparisons, `torch.tensor(ll)` all work), with `.mean` (the
    same value as a plain float), `.stderr` and `.num_draws`. `stderr` is `std(draws) / sqrt(num_draws)` as if the
    draws were independent; the discrete estimator stratifies `l` (and the continuous one `t`) within each batch
    of draws, which usually makes the true error of the mean smaller, so it is a conservative figure. Exact
    values (ARM) have stderr 0 and num_draws 0.
    """

    stderr: float
    num_draws: int

    def __new__(cls, mean: float, stderr: float, num_draws: int) -> LogLikelihood:
        obj = super().__new__(cls, mean)
        obj.stderr = float(stderr)
        obj.num_draws = int(num_draws)
        return obj

    @property
    def mean(self) -> float:
        return float(self)

    def __repr__(self) -> str:
        return f"LogLikelihood(mean={float(self)!r}, stderr={self.stderr!r}, num_draws={self.num_draws})"

    def __str__(self) -> str:
        return float.__repr__(self)

    def __reduce__(self):
        return (LogLikelihood, (float(self), self.stderr, self.num_draws))


@torch.no_grad()
def log_likelihood(
    model: Model,
    prompt_ids: Tensor,
    answer_ids: Tensor,
    *,
    mc_num: int = 128,
    batch_size: int = 32,
    mask_id: int,
    cfg_scale: float = 0.0,
    generator: Generator | None = None,
    method: str = "discrete",
    eps: float = 1e-3,
) -> LogLikelihood:
    """Monte Carlo estimate of log p(answer | prompt) (a lower bound in expectation) for a masked diffusion model.

    Args:
        model: any callable `(input_ids [B, T], attention_mask) -> logits [B, T, V]`, bidirectional; no padding, so the
            mask is None (passed only to a callable that requires it).
        prompt_ids, answer_ids: 1-D LongTensors of one example (the prompt may be empty, the answer may not).
        mc_num: number of draws (LLaDA: 128; one suffices for a single-token answer in the discrete method).
        batch_size: draws per forward pass; `l` (or `t`) is stratified within each batch of draws.
        mask_id: the mask token id.
        cfg_scale: unsupervised CFG (the unconditional pass masks the whole prompt), as in LLaDA's evaluation.
        method: "discrete" (LLaDA: l ~ U{1..L}, weight L/l) or "continuous" (SMDM: t antithetic, weight 1/p).
        eps: the continuous method's clamp p = (1 - eps) t + eps.
    """
    if prompt_ids.dim() != 1 or answer_ids.dim() != 1:
        raise ValueError(
            f"prompt_ids and answer_ids must be 1-D, got shapes {tuple(prompt_ids.shape)}, {tuple(answer_ids.shape)}"
        )
    if answer_ids.numel() == 0:
        raise ValueError("answer_ids is empty")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if mc_num < 1 or batch_size < 1:
        raise ValueError(f"mc_num and batch_size must be >= 1, got mc_num={mc_num}, batch_size={batch_size}")
    check_cfg_scale(cfg_scale)
    if method == "continuous" and not 0 <= eps < 1:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    device = answer_ids.device
    prompt_len, answer_len = prompt_ids.numel(), answer_ids.numel()
    seq = torch.cat((prompt_ids.to(device), answer_ids))
    prompt_positions = (torch.arange(seq.numel(), device=device) < prompt_len).expand(1, -1)
    draws = []
    for first in range(0, mc_num, batch_size):
        b = min(batch_size, mc_num - first)
        if method == "discrete":
            masked, weight = _discrete_masks(b, answer_len, generator, device)
        else:
            masked, weight = _continuous_masks(b, answer_len, eps, generator, device)
        noisy = seq.repeat(b, 1)
        noisy[:, prompt_len:] = torch.where(masked, mask_id, answer_ids)
        logits = guided_logits(model, noisy, None, prompt_positions.expand(b, -1), cfg_scale, mask_id)
        logits = logits[:, prompt_len:].float()
        ce = F.cross_entropy(logits.reshape(b * answer_len, -1), answer_ids.repeat(b), reduction="none")
        masked_ce = (ce.view(b, answer_len).double() * masked).sum(dim=1)
        draws.append(-weight * masked_ce)
    values = torch.cat(draws)
    stderr = values.std().item() / math.sqrt(values.numel()) if values.numel() > 1 else float("nan")
    return LogLikelihood(values.mean().item(), stderr, values.numel())


def _discrete_masks(b: int, length: int, generator: Generator | None, device: torch.device) -> tuple[Tensor, Tensor]:
    """b masks over `length` answer tokens with l masked, and weights L/l.

    l is stratified as in LLaDA's `_forward_process`: one random offset k ~ U{0..L-1} per batch,
    l_j = ((k + floor(j L / b)) mod L) + 1, so each l_j is exactly uniform on {1..L} and a batch of b = L draws
    covers every l once. (LLaDA rounds `k + j L / b` with round-half-to-even, which makes l_j slightly
    non-uniform when L / b has half-integer multiples; floor keeps the marginal exact.)
    """
    k = torch.randint(0, length, (1,), generator=generator, device=device)
    l = (k + torch.arange(b, device=device) * length // b) % length + 1
    scores = torch.rand(b, length, generator=generator, device=device)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # a uniformly random permutation per draw
    return ranks < l[:, None], length / l.double()


def _continuous_masks(
    b: int, length: int, eps: float, generator: Generator | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    """b masks with i.i.d. Bernoulli(p) tokens, t antithetic `(u + j/b) mod 1`, p = (1-eps)t + eps; weights 1/p."""
    u = torch.rand(1, generator=generator, device=device, dtype=torch.float64)
    t = torch.remainder(u + torch.arange(b, device=device, dtype=torch.float64) / b, 1.0)
    p = (1 - eps) * t + eps
    masked = torch.rand(b, length, generator=generator, device=device, dtype=torch.float64) < p[:, None]
    return masked, 1.0 / p


@torch.no_grad()
def ar_log_likelihood(model: Model, prompt_ids: Tensor, answer_ids: Tensor) -> LogLikelihood:
    """Exact sum_i log p(answer_i | prompt, answer_<i) from one forward pass of a causal model.

    The prompt must hold at least one token (the first answer token needs a context, e.g. a BOS token).
    Returns `LogLikelihood(value, stderr=0.0, num_draws=0)`.
    """
    if prompt_ids.dim() != 1 or answer_ids.dim() != 1:
        raise ValueError("prompt_ids and answer_ids must be 1-D")
    if prompt_ids.numel() == 0 or answer_ids.numel() == 0:
        raise ValueError("ar_log_likelihood needs a non-empty prompt (e.g. a BOS token) and a non-empty answer")
    if getattr(model, "causal", None) is False:  # a Transformer built for a bidirectional objective
        raise ValueError("ar_log_likelihood needs a causal model (model.causal=True: an ARM); use log_likelihood")
    prompt_len = prompt_ids.numel()
    seq = torch.cat((prompt_ids.to(answer_ids.device), answer_ids))[None]
    logits = call_model(model, seq)[0, prompt_len - 1 : -1].double()  # position i-1 predicts token i
    log_probs = logits.log_softmax(dim=-1).gather(-1, answer_ids[:, None]).squeeze(-1)
    return LogLikelihood(log_probs.sum().item(), 0.0, 0)
