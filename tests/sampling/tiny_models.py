"""Tiny models shared by the sampler tests: real Transformers with peaked logits, and fakes with fixed logits."""

from __future__ import annotations

import dataclasses

import torch

from llada_lightning.config import ModelConfig
from llada_lightning.models import Transformer, build_model

# init_std 0.5 (not 0.02) so random-init logits are peaked: greedy choices and confidence orders are then
# far from ties, and float-level differences (padding, batching, caching) cannot flip them.
TINY = ModelConfig(
    n_layers=1, n_heads=2, n_kv_heads=2, d_model=32, d_ff=64, vocab_size=50, max_seq_len=64, init_std=0.5
)


def tiny_model(causal: bool = False, seed: int = 0, **changes) -> Transformer:
    torch.manual_seed(seed)
    return build_model(dataclasses.replace(TINY, **changes), causal=causal).eval()


class FixedLogits:
    """A fake model: logits[b, i] = table[i] for every row, whatever the tokens; records its inputs."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table  # [T, V]
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((input_ids.clone(), None if attention_mask is None else attention_mask.clone()))
        return self.table[: input_ids.shape[1]].expand(input_ids.shape[0], -1, -1).clone()
