"""What the trainer needs from an objective, and the validation of its config.

A "model" is any callable `model(input_ids: LongTensor[B, T]) -> logits[B, T, V]`. All randomness goes
through the `torch.Generator` passed in, never the global RNG, so a resumed run redraws the same masks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from torch import Generator, Tensor

from llada_lightning.config.schema import ObjectiveConfig
from llada_lightning.objectives.schedules import SCHEDULES

Model = Callable[[Tensor], Tensor]

OBJECTIVE_NAMES = ("llada", "arm")
TIME_SAMPLINGS = ("iid", "antithetic")
WEIGHTINGS = ("elbo", "unweighted")


@runtime_checkable
class Objective(Protocol):
    """A training loss and a validation NLL (or NLL bound) for a model callable."""

    name: str
    is_nll_bound: bool  # False: validation numbers must not be reported as an NLL bound

    def training_loss(self, model: Model, x0: Tensor, generator: Generator) -> dict[str, Tensor | int]:
        """{"loss": differentiable scalar, "seq_len": length used, ...objective-specific statistics}."""
        ...

    def validation_nll(self, model: Model, x0: Tensor, generator: Generator) -> tuple[Tensor, int]:
        """(NLL in nats summed over the batch, number of tokens it covers); nats/token = first / second."""
        ...


def validate_objective_config(cfg: ObjectiveConfig) -> None:
    """Raise ValueError (one line naming the key) for any invalid field of `cfg`."""

    def one_of(key: str, value: object, valid: tuple[str, ...]) -> None:
        if value not in valid:
            raise ValueError(f"objective.{key}={value!r} is not one of {', '.join(valid)}")

    one_of("name", cfg.name, OBJECTIVE_NAMES)
    one_of("schedule", cfg.schedule, tuple(SCHEDULES))
    one_of("time_sampling", cfg.time_sampling, TIME_SAMPLINGS)
    one_of("weighting", cfg.weighting, WEIGHTINGS)
    if not cfg.schedule_power > 0:
        raise ValueError(f"objective.schedule_power={cfg.schedule_power!r} must be > 0")
    if not 0 < cfg.eps < 1:
        raise ValueError(f"objective.eps={cfg.eps!r} must satisfy 0 < eps < 1")
    if not 0 <= cfg.random_length_prob <= 1:
        raise ValueError(f"objective.random_length_prob={cfg.random_length_prob!r} must be in [0, 1]")
    if isinstance(cfg.val_mask_draws, bool) or not isinstance(cfg.val_mask_draws, int) or cfg.val_mask_draws < 1:
        raise ValueError(f"objective.val_mask_draws={cfg.val_mask_draws!r} must be an integer >= 1")
