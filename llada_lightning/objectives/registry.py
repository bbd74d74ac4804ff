"""The one registry of objectives, and the one validator of the `objective.*` config group.

Everything that differs between LLaDA and the autoregressive baseline is decided here, by the objective class:
its loss, its attention (`causal`) and what its validation number is (`val_loss_kind`).
"""

from __future__ import annotations

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import ObjectiveConfig
from llada_lightning.objectives.arm import ARMObjective
from llada_lightning.objectives.base import Objective
from llada_lightning.objectives.llada import TIME_SAMPLINGS, WEIGHTINGS, LLaDAObjective
from llada_lightning.objectives.schedules import SCHEDULES
from llada_lightning.objectives.sft import SFT_NORMALIZATIONS

OBJECTIVES: dict[str, type[LLaDAObjective] | type[ARMObjective]] = {
    LLaDAObjective.name: LLaDAObjective,
    ARMObjective.name: ARMObjective,
}


def _one_of(key: str, value: object, valid: tuple[str, ...] | list[str]) -> None:
    if value not in valid:
        raise ConfigError(f"objective.{key}={value!r} is not one of {', '.join(valid)}")


def objective_class(name: str) -> type[LLaDAObjective] | type[ARMObjective]:
    """The objective class registered as `name` (ConfigError listing the names otherwise)."""
    _one_of("name", name, list(OBJECTIVES))
    return OBJECTIVES[name]


def is_causal(name: str) -> bool:
    """Whether objective `name` trains (and decodes with) causal attention."""
    return objective_class(name).causal


def validate_objective_config(cfg: ObjectiveConfig) -> None:
    """Raise ConfigError (one line naming the key and the valid range) for any invalid field of `cfg`."""
    objective_class(cfg.name)
    _one_of("schedule", cfg.schedule, list(SCHEDULES))
    _one_of("time_sampling", cfg.time_sampling, TIME_SAMPLINGS)
    _one_of("weighting", cfg.weighting, WEIGHTINGS)
    if not cfg.schedule_power > 0:
        raise ConfigError(f"objective.schedule_power={cfg.schedule_power!r} must be > 0")
    if not 0 < cfg.eps < 1:
        raise ConfigError(f"objective.eps={cfg.eps!r} must satisfy 0 < eps < 1 (LLaDA uses 1e-3)")
    if not 0 <= cfg.random_length_prob <= 1:
        raise ConfigError(f"objective.random_length_prob={cfg.random_length_prob!r} must be in [0, 1] (LLaDA: 0.01)")
    _one_of("sft_normalization", cfg.sft_normalization, SFT_NORMALIZATIONS)
    draws = cfg.val_mask_draws
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ConfigError(f"objective.val_mask_draws={draws!r} must be an integer >= 1")


def build_objective(cfg: ObjectiveConfig, mask_id: int) -> Objective:
    """The objective named by cfg.name, after validating every field of cfg (ConfigError naming the key)."""
    validate_objective_config(cfg)
    if cfg.name == ARMObjective.name:
        return ARMObjective(cfg)
    return LLaDAObjective(cfg, mask_id)
