"""Masking schedules of a masked diffusion LM (MDLM, Sahoo et al. 2024, `noise_schedule.py`).

`alpha(t)` is the probability that a token is still clean at time t in [0, 1]; a token is masked with
probability `mask_prob(t) = 1 - alpha(t)`; the ELBO weight of a masked token is
`weight(t) = -alpha'(t) / (1 - alpha(t))`. Callers clamp t away from 0 first (`llada.effective_time`):
every weight below diverges at t = 0.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor


class MaskSchedule(ABC):
    """alpha(t), mask_prob(t) and weight(t), elementwise on tensors of times."""

    name: str

    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """Probability that a token is still clean at time t."""

    def mask_prob(self, t: Tensor) -> Tensor:
        # MDLM: a token is masked with probability 1 - alpha_t.
        return 1.0 - self.alpha(t)

    @abstractmethod
    def weight(self, t: Tensor) -> Tensor:
        """ELBO weight of a masked token, -alpha'(t) / (1 - alpha(t)), in closed form."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearSchedule(MaskSchedule):
    """alpha_t = 1 - t: mask probability t, weight 1/t (LLaDA; MDLM's "loglinear" with the eps clamp)."""

    name = "linear"

    def alpha(self, t: Tensor) -> Tensor:
        # LLaDA / MDLM loglinear: alpha_t = 1 - t.
        return 1.0 - t

    def mask_prob(self, t: Tensor) -> Tensor:
        # 1 - alpha_t = t, returned as is (no rounding through 1 - (1 - t)).
        return t.clone()

    def weight(self, t: Tensor) -> Tensor:
        # -alpha'/(1 - alpha) = 1/t: LLaDA's CE / p_mask.
        return 1.0 / t


class CosineSchedule(MaskSchedule):
    """alpha_t = cos(pi t / 2): weight (pi/2) sin(pi t/2) / (1 - cos(pi t/2)) (MDLM cosine)."""

    name = "cosine"

    def alpha(self, t: Tensor) -> Tensor:
        # MDLM cosine: alpha_t = cos(pi t / 2).
        return torch.cos(0.5 * math.pi * t)

    def mask_prob(self, t: Tensor) -> Tensor:
        # 1 - cos(x) = 2 sin^2(x/2): the same value without cancellation at small t.
        return 2.0 * torch.sin(0.25 * math.pi * t) ** 2

    def weight(self, t: Tensor) -> Tensor:
        # (pi/2) sin(x) / (1 - cos(x)) with x = pi t/2, rewritten as (pi/2) / tan(x/2) (half-angle identity).
        return (0.5 * math.pi) / torch.tan(0.25 * math.pi * t)


class PolynomialSchedule(MaskSchedule):
    """alpha_t = 1 - t^k: mask probability t^k, weight k/t (k = 1 is the linear schedule)."""

    name = "polynomial"

    def __init__(self, power: float = 2.0) -> None:
        if not power > 0:
            raise ValueError(f"polynomial schedule power must be > 0, got {power!r}")
        self.power = float(power)

    def alpha(self, t: Tensor) -> Tensor:
        # alpha_t = 1 - t^k.
        return 1.0 - t**self.power

    def mask_prob(self, t: Tensor) -> Tensor:
        # 1 - alpha_t = t^k, computed directly.
        return t**self.power

    def weight(self, t: Tensor) -> Tensor:
        # -alpha'/(1 - alpha) = k t^(k-1) / t^k = k/t.
        return self.power / t

    def __repr__(self) -> str:
        return f"PolynomialSchedule(power={self.power:g})"


SCHEDULES: dict[str, type[MaskSchedule]] = {
    "linear": LinearSchedule,
    "cosine": CosineSchedule,
    "polynomial": PolynomialSchedule,
}


def get_schedule(name: str, power: float = 2.0) -> MaskSchedule:
    """The schedule called `name`; `power` is used by the polynomial schedule only."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown mask schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    if name == "polynomial":
        return PolynomialSchedule(power)
    return SCHEDULES[name]()
