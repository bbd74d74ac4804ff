"""Planning a run before it starts: per-GPU memory by formula (`memory`), and the `llada plan` command (`cli`)."""

from llada_lightning.planning.memory import (
    PRECISIONS,
    ActivationEstimate,
    MemoryEstimate,
    activation_estimate,
    layer_bytes_per_token,
    memory_estimate,
)

__all__ = [
    "PRECISIONS",
    "ActivationEstimate",
    "MemoryEstimate",
    "activation_estimate",
    "layer_bytes_per_token",
    "memory_estimate",
]
