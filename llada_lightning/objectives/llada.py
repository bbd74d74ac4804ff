"""The LLaDA masked diffusion objective (Nie et al. 2025), with MDLM's general schedules.

Training step, per sequence b of a batch x0[B, T]:
  t_b ~ U[0, 1)  (i.i.d., or antithetic across the batch: t_b = (u + b/B) mod 1, MDLM)
  s_b = (1 - eps) t_b + eps                   (LLaDA's eps clamp, applied to every schedule)
  each token masked independently with probability p_b = 1 - alpha(s_b)
  L = (1 / (B T)) sum_b sum_i 1[masked] CE(logits[b, i], x0[b, i]) w(s_b),   w = -alpha'/(1 - alpha)
For the linear schedule p_b = s_b and w = 1/p_b: exactly LLaDA's pretraining loss.

Every random number comes from the `torch.Generator` passed in, in a fixed order (random-length coin,
then the length if drawn, then the times, then the mask), so a run resumed with its generator state
redraws bit-for-bit the same masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Generator, Tensor

from llada_lightning.config.schema import ObjectiveConfig
from llada_lightning.objectives.base import Model
from llada_lightning.objectives.schedules import MaskSchedule, get_schedule
from llada_lightning.objectives.sft import answer_positions, sft_elbo, sft_forward_process, sft_loss

TIME_SAMPLINGS = ("iid", "antithetic")  # MDLM `_sample_t`: i.i.d. or antithetic (low-discrepancy) times
WEIGHTINGS = ("elbo", "unweighted")  # elbo: w = -alpha'/(1 - alpha) (MDLM, Sahoo et al. 2024); unweighted: w = 1


def _uniform(shape: tuple[int, ...], generator: Generator, device: torch.device | str | None) -> Tensor:
    """U[0, 1) float32 draws from `generator` (on the generator's device), moved to `device`."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def sample_times(
    batch_size: int, *, generator: Generator, antithetic: bool, device: torch.device | str | None = None
) -> Tensor:
    """Times t[B] in [0, 1): i.i.d. uniform, or antithetic/stratified t_i = (u + i/B) mod 1 (MDLM)."""
    if not antithetic:
        return _uniform((batch_size,), generator, device)
    u = _uniform((1,), generator, device)
    # MDLM `_sample_t` with antithetic sampling: one u, shifted by i/B, wrapped into [0, 1).
    offsets = torch.arange(batch_size, device=device, dtype=torch.float32) / batch_size
    return torch.remainder(u + offsets, 1.0)


def effective_time(t: Tensor, eps: float) -> Tensor:
    """The time actually used: s = (1 - eps) t + eps (LLaDA's clamp; keeps the weight finite)."""
    return (1.0 - eps) * t + eps


def forward_process(
    x0: Tensor, t: Tensor, *, schedule: MaskSchedule, eps: float, mask_id: int, generator: Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Mask x0[B, T] at times t[B]: returns (xt, masked[B, T] bool, p_mask[B]).

    Each token is masked independently with probability p_b = schedule.mask_prob(effective_time(t_b)).
    """
    p_mask = schedule.mask_prob(effective_time(t, eps))
    masked = _uniform(tuple(x0.shape), generator, x0.device) < p_mask[:, None]
    xt = x0.masked_fill(masked, mask_id)
    return xt, masked, p_mask


def _masked_token_ce(logits: Tensor, x0: Tensor, masked: Tensor) -> Tensor:
    """CE[B, T] of the masked positions (zero elsewhere), in float32 or wider.

    Only the masked rows are upcast and normalised (as LLaDA indexes `logits[masked_indices]`).
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    ce = F.cross_entropy(logits[masked].to(dtype), x0[masked], reduction="none")
    return torch.zeros(x0.shape, dtype=dtype, device=logits.device).masked_scatter(masked, ce)


def masked_diffusion_loss(logits: Tensor, x0: Tensor, masked: Tensor, weight: Tensor) -> Tensor:
    """(1 / (B T)) sum_b sum_i masked * CE(logits[b, i], x0[b, i]) * weight[b] (Nie et al. 2025, eq. 3).

    Divided by ALL B*T tokens, not by the number of masked ones (LLaDA Eq. 3 / pretraining code).
    """
    batch, length = x0.shape
    per_sequence = _masked_token_ce(logits, x0, masked).sum(dim=1) * weight
    return per_sequence.sum() / (batch * length)


class LLaDAObjective:
    """LLaDA's masked diffusion loss with a configurable schedule, time sampling and weighting.

    weighting="elbo": w = -alpha'/(1 - alpha), an upper bound on the NLL (LLaDA, MDLM).
    weighting="unweighted": w = 1 (MaskGIT-style ablation). It is NOT an NLL bound, so `is_nll_bound` is
    False; `validation_nll` still reports the ELBO-weighted bound, so runs stay comparable.
    """

    name = "llada"
    causal = False  # bidirectional: a plain Transformer without a causal mask (Nie et al. 2025, Sec. 2.1)
    val_loss_kind = "elbo"  # validated with the ELBO-weighted bound whatever the training weighting (eq. 3)

    def __init__(self, cfg: ObjectiveConfig, mask_id: int) -> None:
        self.cfg = cfg
        self.mask_id = int(mask_id)
        self.schedule = get_schedule(cfg.schedule, cfg.schedule_power)
        self.eps = float(cfg.eps)

    @property
    def is_nll_bound(self) -> bool:
        return self.cfg.weighting == "elbo"

    def __repr__(self) -> str:
        return (
            f"LLaDAObjective(schedule={self.schedule!r}, eps={self.eps:g}, time_sampling="
            f"{self.cfg.time_sampling!r}, weighting={self.cfg.weighting!r}, mask_id={self.mask_id})"
        )

    def loss_weight(self, s: Tensor) -> Tensor:
        """Per-sequence weight at effective times s: the ELBO weight, or 1 when unweighted."""
        if self.cfg.weighting == "unweighted":
            return torch.ones_like(s)
        return self.schedule.weight(s)

    def sample_length(self, seq_len: int, generator: Generator) -> int:
        """With probability random_length_prob a length uniform in [1, seq_len], else seq_len (LLaDA: 1%)."""
        coin = torch.rand((), generator=generator, device=generator.device)
        if coin.item() < self.cfg.random_length_prob:
            return int(torch.randint(1, seq_len + 1, (), generator=generator, device=generator.device))
        return seq_len

    def loss_at_times(self, model: Model, x0: Tensor, t: Tensor, generator: Generator) -> dict:
        """The training loss at given times t[B] (the mask is still drawn from `generator`)."""
        xt, masked, _ = self._mask(x0, t, generator)
        weight = self.loss_weight(effective_time(t, self.eps))
        loss = masked_diffusion_loss(model(xt), x0, masked, weight)
        return {"loss": loss, "mask_rate": masked.float().mean(), "seq_len": int(x0.shape[1])}

    def training_loss(self, model: Model, x0: Tensor, generator: Generator) -> dict:
        """{"loss": scalar, "mask_rate": fraction of tokens masked, "seq_len": length used}."""
        length = self.sample_length(int(x0.shape[1]), generator)
        x0 = x0[:, :length]
        t = sample_times(
            x0.shape[0],
            generator=generator,
            antithetic=self.cfg.time_sampling == "antithetic",
            device=x0.device,
        )
        return self.loss_at_times(model, x0, t, generator)

    @torch.no_grad()
    def validation_nll(self, model: Model, x0: Tensor, generator: Generator) -> tuple[Tensor, int]:
        """(ELBO NLL in nats summed over the batch, B*T), averaged over K = val_mask_draws mask draws.

        Sequence b uses the stratified times t_bk = (u_b + k/K) mod 1 (one u_b per sequence), always the
        ELBO weight of the schedule, and the full length. Same generator state, same result.
        """
        batch, length = x0.shape
        draws = self.cfg.val_mask_draws
        u = _uniform((batch,), generator, x0.device)
        total = torch.zeros((), dtype=torch.float32, device=x0.device)
        for k in range(draws):
            t = torch.remainder(u + k / draws, 1.0)
            xt, masked, _ = self._mask(x0, t, generator)
            weight = self.schedule.weight(effective_time(t, self.eps))
            total = total + (_masked_token_ce(model(xt), x0, masked).sum(dim=1) * weight).sum()
        return total / draws, batch * length

    # -- supervised fine-tuning (objectives/sft.py) ----------------------------------------------------------
    def sft_training_loss(self, model: Model, input_ids: Tensor, prompt_lengths: Tensor, generator: Generator) -> dict:
        """LLaDA's SFT loss (GUIDELINES.md): t per sample, only answer tokens masked, `objective.sft_normalization`."""
        t = sample_times(
            input_ids.shape[0],
            generator=generator,
            antithetic=self.cfg.time_sampling == "antithetic",
            device=input_ids.device,
        )
        noisy, masked, p_mask = sft_forward_process(
            input_ids, prompt_lengths, t, eps=self.eps, mask_id=self.mask_id, generator=generator
        )
        loss = sft_loss(
            model(noisy), input_ids, masked, p_mask, prompt_lengths, normalization=self.cfg.sft_normalization
        )
        return {"loss": loss, "mask_rate": masked.float().mean(), "seq_len": int(input_ids.shape[1])}

    @torch.no_grad()
    def sft_validation_nll(
        self, model: Model, input_ids: Tensor, prompt_lengths: Tensor, answer_lengths: Tensor, generator: Generator
    ) -> tuple[Tensor, int]:
        """(conditional ELBO of each row's own answer given its prompt, summed; answer tokens), K stratified times.

        Only the answer's own tokens (its final EOS included) are masked and scored; the batch padding after it
        stays visible, as the sequence end is in LLaDA's likelihood evaluation (get_log_likelihood.py).
        """
        batch, length = input_ids.shape
        draws = self.cfg.val_mask_draws
        u = _uniform((batch,), generator, input_ids.device)
        ends = (prompt_lengths + answer_lengths).to(input_ids.device)
        own = answer_positions(prompt_lengths, length) & (torch.arange(length, device=input_ids.device) < ends[:, None])
        total = torch.zeros((), dtype=torch.float32, device=input_ids.device)
        for k in range(draws):
            t = torch.remainder(u + k / draws, 1.0)
            _, masked, p_mask = sft_forward_process(
                input_ids, prompt_lengths, t, eps=self.eps, mask_id=self.mask_id, generator=generator
            )
            masked = masked & own
            total = (
                total + sft_elbo(model(input_ids.masked_fill(masked, self.mask_id)), input_ids, masked, p_mask).sum()
            )
        return total / draws, int(answer_lengths.sum())

    def _mask(self, x0: Tensor, t: Tensor, generator: Generator) -> tuple[Tensor, Tensor, Tensor]:
        return forward_process(x0, t, schedule=self.schedule, eps=self.eps, mask_id=self.mask_id, generator=generator)
