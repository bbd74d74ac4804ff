"""Training objectives (plain torch): LLaDA masked diffusion and the matched autoregressive baseline."""

from __future__ import annotations

from llada_lightning.objectives.arm import ARMObjective, next_token_loss
from llada_lightning.objectives.base import Model, Objective
from llada_lightning.objectives.llada import (
    LLaDAObjective,
    effective_time,
    forward_process,
    masked_diffusion_loss,
    sample_times,
)
from llada_lightning.objectives.registry import (
    OBJECTIVES,
    build_objective,
    is_causal,
    objective_class,
    validate_objective_config,
)
from llada_lightning.objectives.schedules import (
    CosineSchedule,
    LinearSchedule,
    MaskSchedule,
    PolynomialSchedule,
    get_schedule,
)
from llada_lightning.objectives.sft import SFT_NORMALIZATIONS, arm_sft_loss, sft_forward_process, sft_loss

__all__ = [
    "OBJECTIVES",
    "SFT_NORMALIZATIONS",
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
    "is_causal",
    "masked_diffusion_loss",
    "next_token_loss",
    "objective_class",
    "sample_times",
    "arm_sft_loss",
    "sft_forward_process",
    "sft_loss",
    "validate_objective_config",
]
