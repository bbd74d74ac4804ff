"""The autoregressive baseline: next-token cross-entropy (SMDM pretrain/train_ar.py), exact NLL for validation.

The model is the same backbone with the causal mask on; only this file and the mask differ from LLaDA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Generator, Tensor

from llada_lightning.config.schema import ObjectiveConfig
from llada_lightning.objectives.base import Model
from llada_lightning.objectives.sft import answer_next_token_ce, arm_sft_loss


def _next_token_ce(logits: Tensor, x: Tensor) -> Tensor:
    """CE[B, T-1] of logits[:, :-1] against x[:, 1:], in float32 or wider."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    pred = logits[:, :-1].to(dtype)
    return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), x[:, 1:].reshape(-1), reduction="none").view(
        x.shape[0], -1
    )


def next_token_loss(logits: Tensor, x: Tensor) -> Tensor:
    """Mean over B*(T-1) predicted positions of -log p(x_i | x_<i)."""
    return _next_token_ce(logits, x).mean()


class ARMObjective:
    """Next-token prediction; its validation NLL is exact, hence trivially an NLL "bound"."""

    name = "arm"
    causal = True  # the same backbone with the causal mask on (SMDM pretrain/train_ar.py; MDLM `causal`)
    val_loss_kind = "nll"  # exact next-token NLL
    is_nll_bound = True

    def __init__(self, cfg: ObjectiveConfig | None = None) -> None:
        self.cfg = cfg

    def __repr__(self) -> str:
        return "ARMObjective()"

    def training_loss(self, model: Model, x0: Tensor, generator: Generator | None = None) -> dict:
        """{"loss": mean next-token CE, "seq_len": T}; `generator` is unused (no randomness)."""
        return {"loss": next_token_loss(model(x0), x0), "seq_len": int(x0.shape[1])}

    @torch.no_grad()
    def validation_nll(self, model: Model, x0: Tensor, generator: Generator | None = None) -> tuple[Tensor, int]:
        """(sum of -log p(x_i | x_<i) in nats over predicted positions, B*(T-1))."""
        batch, length = x0.shape
        return _next_token_ce(model(x0), x0).sum(), batch * (length - 1)

    # -- supervised fine-tuning (objectives/sft.py) ----------------------------------------------------------
    def sft_training_loss(
        self, model: Model, input_ids: Tensor, prompt_lengths: Tensor, generator: Generator | None = None
    ) -> dict:
        """Next-token CE on the answer tokens only (EOS padding included); the prompt is context."""
        normalization = self.cfg.sft_normalization if self.cfg is not None else "sample"
        loss = arm_sft_loss(model(input_ids), input_ids, prompt_lengths, normalization=normalization)
        return {"loss": loss, "seq_len": int(input_ids.shape[1])}

    @torch.no_grad()
    def sft_validation_nll(
        self,
        model: Model,
        input_ids: Tensor,
        prompt_lengths: Tensor,
        answer_lengths: Tensor,
        generator: Generator | None = None,
    ) -> tuple[Tensor, int]:
        """(exact -log p(answer | prompt) summed over the rows' own answers, answer tokens)."""
        ce, targets = answer_next_token_ce(model(input_ids), input_ids, prompt_lengths)
        ends = (prompt_lengths + answer_lengths).to(input_ids.device)
        positions = torch.arange(1, input_ids.shape[1], device=input_ids.device)
        own = targets & (positions[None, :] < ends[:, None])
        return (ce * own).sum(), int(answer_lengths.sum())
