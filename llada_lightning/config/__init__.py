"""Typed configs: dataclass schemas, the model ladder, and YAML + dotlist composition with validation."""

from llada_lightning.config.ladder import ladder, load_model_config
from llada_lightning.config.schema import (
    AttentionConfig,
    DataConfig,
    ModelConfig,
    ObjectiveConfig,
    RunConfig,
    TrainConfig,
)

__all__ = [
    "AttentionConfig",
    "DataConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "RunConfig",
    "TrainConfig",
    "ladder",
    "load_model_config",
]
