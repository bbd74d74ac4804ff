"""Sampling: LLaDA's reverse process (`generate`) and left-to-right ARM decoding with a KV cache (`generate_ar`).

Both take any callable returning logits (see `common.call_model`); the KV caches of `generate` (`cache=`) and the KV
cache of `generate_ar` need `llada_lightning.models.Transformer`.
"""

from llada_lightning.sampling.autoregressive import generate_ar, sample_next, top_k_top_p_filter
from llada_lightning.sampling.common import call_model, guided_logits
from llada_lightning.sampling.diffusion import (
    REMASKING,
    GenerationOutput,
    generate,
    gumbel_argmax,
    num_transfer_tokens,
    select_top,
)

__all__ = [
    "REMASKING",
    "GenerationOutput",
    "call_model",
    "generate",
    "generate_ar",
    "guided_logits",
    "gumbel_argmax",
    "num_transfer_tokens",
    "sample_next",
    "select_top",
    "top_k_top_p_filter",
]
