"""The variance of a training-loss estimator, and of its gradient, over the objective's own randomness.

At fixed weights theta and a fixed batch x0, one training step's loss L(theta; x0, xi) is a random variable of the
objective's randomness xi (the times t and the masks of LLaDA/MDLM; nothing for the autoregressive baseline).
Its variance, and the trace of the covariance of its gradient, are what a lower-variance schedule, weighting or
antithetic time sampling buys (Kingma et al. 2021, "Variational Diffusion Models", Sec. 5 / App. on the variance
of the diffusion loss estimator; Sahoo et al. 2024, MDLM, Sec. 3.5 "antithetic sampling" of t).

`estimator_variance` draws xi `draws` times per batch, from one `torch.Generator(device=first batch's device)`
seeded with `seed`, batches in the given order and, within each batch, draws in order: the same call gives the
same numbers bit for bit (on the same device and torch build). Per batch b it measures

  loss_var_b = (1 / (D - 1)) sum_d (L_bd - mean_d L_bd)^2                   (unbiased sample variance)
  grad_var_b = sum_j (1 / (D - 1)) sum_d (g_bdj - mean_d g_bdj)^2 = E||g - E g||^2 estimate
  grad_norm_sq_b = ||mean_d g_bd||^2

and reports their means over batches: the within-batch variance due to the masks/times only, never the
variance between data batches. The gradient is accumulated by Welford's algorithm in float64 (Welford 1962;
Knuth TAOCP vol. 2, 4.2.2), so memory is two float64 copies of the trainable parameters, not D gradients.

`loss_var_se` is the plug-in standard error of the unbiased sample variance from the sample fourth central
moment, Var(s^2) = (mu_4 - (D - 3)/(D - 1) sigma^4) / D (Cramer 1946, "Mathematical Methods of Statistics",
27.4; e.g. Wikipedia "Variance", "Distribution of the sample variance"), with mu_4 and sigma^4 replaced by
m_4 = mean_d (L - mean L)^4 and s^4; batches are independent draws, so se = sqrt(sum_b se_b^2) / n_batches.
It assumes a finite fourth moment: a schedule whose ELBO weight 1/s is clamped by a tiny eps has a heavy tail
at small t, and its se is then itself noisy; compare variants at equal eps.

LLaDA's random-length coin (`objective.random_length_prob`) is skipped by default (`full_length=True`): the
times are drawn with the objective's own `sample_times` (iid or antithetic per its config) and the loss is the
objective's own `loss_at_times` (its schedule, eps clamp and weighting) at the batch's full length, so variants
differ only in their schedule, weighting and time sampling. `full_length=False` calls `training_loss` itself,
coin included. The autoregressive objective has no randomness: its loss and gradient are computed once per
batch and every variance is exactly 0.

The model runs in eval mode (restored afterwards), under `torch.no_grad` for the loss alone and under
`torch.enable_grad` with `torch.autograd.grad` for gradients, with respect to the parameters whose
`requires_grad` is set: nothing is written to the weights, to `.grad` or to `requires_grad`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Generator, Tensor, nn

from llada_lightning.objectives.arm import ARMObjective
from llada_lightning.objectives.base import Objective
from llada_lightning.objectives.llada import LLaDAObjective, sample_times


@dataclass(frozen=True)
class EstimatorVariance:
    """Mask/time variance of the per-batch training loss (and its gradient), averaged over batches.

    `grad_var` and `grad_norm_sq_mean` are None when the gradient was not computed. `grad_norm_sq_mean` is
    ||mean_d g||^2, which overestimates ||E g||^2 by grad_var / draws (the noise of the mean itself).
    """

    loss_mean: float  # mean over batches and draws of the training loss
    loss_var: float  # mean over batches of the unbiased variance across draws of the per-batch loss
    loss_var_se: float  # standard error of loss_var (sample fourth moment, see the module docstring)
    grad_var: float | None  # mean over batches of E||g - E g||^2 (trace of the gradient covariance)
    grad_norm_sq_mean: float | None  # mean over batches of ||mean_d g||^2
    draws: int
    n_batches: int

    @property
    def grad_relative_noise(self) -> float | None:
        """grad_var / grad_norm_sq_mean: the gradient noise relative to the squared mean gradient."""
        if self.grad_var is None or self.grad_norm_sq_mean is None:
            return None
        if self.grad_norm_sq_mean == 0.0:
            return 0.0 if self.grad_var == 0.0 else math.inf
        return self.grad_var / self.grad_norm_sq_mean


@contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """The model in eval mode for the duration, its previous mode restored after (nn.Module only)."""
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    try:
        yield
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)


def _draw_loss(objective: Objective, model: Any, x0: Tensor, generator: Generator, full_length: bool) -> Tensor:
    """One draw of the training loss: at the full length via the objective's own functions, or `training_loss`."""
    if full_length and isinstance(objective, LLaDAObjective):
        # LLaDAObjective.training_loss without its random-length coin: the same times, weights and masks.
        t = sample_times(
            x0.shape[0],
            generator=generator,
            antithetic=objective.cfg.time_sampling == "antithetic",
            device=x0.device,
        )
        return objective.loss_at_times(model, x0, t, generator)["loss"]
    return objective.training_loss(model, x0, generator)["loss"]


def _flat_grad(loss: Tensor, params: list[Tensor]) -> Tensor:
    """d loss / d params, flattened into one float64 vector (zeros for parameters the loss does not use)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1).to(torch.float64)
            for p, g in zip(params, grads, strict=True)
        ]
    )


def _variance_and_se(losses: Tensor) -> tuple[float, float]:
    """(unbiased sample variance, its plug-in standard error) of the float64 draws `losses[D]`."""
    n = losses.numel()
    centred = losses - losses.mean()
    s2 = float(centred.square().sum()) / (n - 1)  # unbiased sample variance
    m4 = float(centred.pow(4).mean())  # sample fourth central moment
    # Var(s^2) = (mu_4 - (n - 3)/(n - 1) sigma^4) / n (Cramer 1946, 27.4), plug-in m_4 and s^4.
    var_s2 = (m4 - (n - 3) / (n - 1) * s2 * s2) / n
    return s2, math.sqrt(max(var_s2, 0.0))


def estimator_variance(
    model: Any,
    objective: Objective,
    batches: Sequence[Tensor] | Tensor,
    *,
    draws: int,
    seed: int,
    gradient: bool = True,
    full_length: bool = True,
) -> EstimatorVariance:
    """Variance over `draws` draws of the objective's times/masks of the training loss (and of its gradient).

    `model` maps ids [B, T] to logits [B, T, V] (an nn.Module when `gradient`); `batches` are x0 LongTensors
    [B, T] (or one such tensor). The gradient is taken w.r.t. every parameter with `requires_grad`.
    """
    if isinstance(batches, Tensor):
        batches = [batches]
    batches = list(batches)
    if not batches:
        raise ValueError("estimator_variance needs at least one batch")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 2:
        raise ValueError(f"draws={draws!r} must be an integer >= 2 (a variance needs two draws)")
    for x0 in batches:
        if x0.ndim != 2:
            raise ValueError(f"every batch must be token ids [B, T], got shape {tuple(x0.shape)}")
    params: list[Tensor] = []
    if gradient:
        if not isinstance(model, nn.Module):
            raise TypeError("gradient=True needs an nn.Module model (its parameters are differentiated)")
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("gradient=True but the model has no parameter with requires_grad")
    deterministic = isinstance(objective, ARMObjective)  # next-token CE: no times, no masks
    generator = torch.Generator(device=batches[0].device).manual_seed(int(seed))

    loss_means: list[float] = []
    loss_vars: list[float] = []
    loss_var_ses: list[float] = []
    grad_vars: list[float] = []
    grad_norms_sq: list[float] = []
    with _eval_mode(model):
        for x0 in batches:
            if deterministic:
                with torch.enable_grad() if gradient else torch.no_grad():
                    loss = objective.training_loss(model, x0, generator)["loss"]
                    if gradient:
                        g = _flat_grad(loss, params)
                        grad_vars.append(0.0)
                        grad_norms_sq.append(float(g.square().sum()))
                loss_means.append(float(loss.detach()))
                loss_vars.append(0.0)
                loss_var_ses.append(0.0)
                continue
            losses = torch.empty(draws, dtype=torch.float64)
            mean = m2 = None
            for d in range(draws):
                with torch.enable_grad() if gradient else torch.no_grad():
                    loss = _draw_loss(objective, model, x0, generator, full_length)
                    if gradient:
                        g = _flat_grad(loss, params)
                        if mean is None:
                            mean = torch.zeros_like(g)
                            m2 = torch.zeros_like(g)
                        # Welford (1962): running mean and sum of squared deviations, elementwise.
                        delta = g - mean
                        mean += delta / (d + 1)
                        m2 += delta * (g - mean)
                losses[d] = float(loss.detach())
            var, se = _variance_and_se(losses)
            loss_means.append(float(losses.mean()))
            loss_vars.append(var)
            loss_var_ses.append(se)
            if gradient:
                assert mean is not None and m2 is not None
                grad_vars.append(float(m2.sum()) / (draws - 1))  # trace of the unbiased covariance
                grad_norms_sq.append(float(mean.square().sum()))

    n = len(batches)
    return EstimatorVariance(
        loss_mean=sum(loss_means) / n,
        loss_var=sum(loss_vars) / n,
        # independent batches: Var(mean_b s_b^2) = sum_b Var(s_b^2) / n^2
        loss_var_se=math.sqrt(sum(se * se for se in loss_var_ses)) / n,
        grad_var=sum(grad_vars) / n if gradient else None,
        grad_norm_sq_mean=sum(grad_norms_sq) / n if gradient else None,
        draws=draws,
        n_batches=n,
    )


def estimator_variance_of_run(
    run_dir: str | Path,
    batches: Sequence[Tensor] | Tensor,
    *,
    draws: int,
    seed: int,
    gradient: bool = True,
    full_length: bool = True,
    objective_overrides: Mapping[str, Any] | None = None,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
) -> EstimatorVariance:
    """`estimator_variance` of a trained run (`inference.loading.load_run`) with its objective config, after
    `objective_overrides` (e.g. {"time_sampling": "antithetic"}); `batches` are moved to `device`.

    `objective.name` cannot be overridden: it decides the attention the weights were trained with.
    """
    from llada_lightning.inference.loading import load_run
    from llada_lightning.objectives.registry import build_objective

    overrides = dict(objective_overrides or {})
    if "name" in overrides:
        raise ValueError("objective_overrides cannot change objective.name (the checkpoint's attention)")
    loaded = load_run(run_dir, device=device, checkpoint=checkpoint)
    objective = build_objective(replace(loaded.cfg.objective, **overrides), loaded.mask_id)
    loaded.model.requires_grad_(gradient)  # load_run freezes its (private) model; differentiate all weights
    if isinstance(batches, Tensor):
        batches = [batches]
    return estimator_variance(
        loaded.model,
        objective,
        [x0.to(loaded.device) for x0 in batches],
        draws=draws,
        seed=seed,
        gradient=gradient,
        full_length=full_length,
    )
