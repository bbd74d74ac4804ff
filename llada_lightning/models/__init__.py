"""Plain-torch models: the shared LLaMA-style backbone for LLaDA (bidirectional) and the ARM (causal)."""

from llada_lightning.models.attention import BACKENDS
from llada_lightning.models.transformer import Transformer, build_model

__all__ = ["BACKENDS", "Transformer", "build_model"]
