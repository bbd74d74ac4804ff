"""Training objectives (plain torch): LLaDA masked diffusion and the matched autoregressive baseline."""

from __future__ import annotations

from llada_lightning.config.schema import ObjectiveConfig
from llada_lightning.objectives.arm import ARMObjective, next_token_loss
from llada_lightning.objectives.base import Model, Objective, validate_objective_config
from llada_lightning.objectives.llada import (
    LLaDAObjective,
    effective_time,
    forward_process,
    masked_diffusion_loss,
    sample_times,
)
from llada_lightning.objectives.schedules import (
    CosineSchedule,
    LinearSchedule,
    MaskSchedule,
    PolynomialSchedule,
    get_schedule,
)


def build_objective(cfg: ObjectiveConfig, mask_id: int) -> Objective:
    """The objective named by cfg.name, after validating every field of cfg (ValueError naming the key)."""
    validate_objective_config(cfg)
    if cfg.name == "arm":
        return ARMObjective(cfg)
    return LLaDAObjective(cfg, mask_id)


__all__ = [
    "ARMObjective",
    "CosineSchedule",
    "LLaDAObjective",
    "LinearSchedule",
    "MaskSchedule",
    "Model",
    "Objective",
    "PolynomialSchedule",
    "build_objective",
    "effective_time",
    "forward_process",
    "get_schedule",
    "masked_diffusion_loss",
    "next_token_loss",
    "sample_times",
    "validate_objective_config",
]
