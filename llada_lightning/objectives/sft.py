"""Supervised fine-tuning losses (plain torch): LLaDA's masked SFT loss and the ARM's answer-only next-token loss.

A batch is `input_ids[B, T]` (prompt, then the answer right-padded with EOS to T) and `prompt_lengths[B]`.
Positions `>= prompt_lengths[b]` are the answer, its EOS padding included: the padding is masked and trained on,
so the model learns to stop (LLaDA GUIDELINES.md, "SFT"; Nie et al. 2025, Sec. 2.3).

LLaDA SFT, per row b (GUIDELINES.md):
    t_b ~ U[0, 1),  p_b = (1 - eps) t_b + eps
    every answer position masked independently with probability p_b; the prompt never
    l_b = sum over masked answer positions of CE / p_b
Normalisations (`objective.sft_normalization`):
    sample  (1/B) sum_b l_b / answer_len_b              (LLaDA GUIDELINES.md; dllm `sequence`)
    batch   sum_b l_b / sum_b answer_len_b               (SMDM sft/finetune_mdm.py: / (B*T - sum prompt_len))
    token   sum_b l_b / number of masked answer tokens   (a per-predicted-token mean)
`sample` and `batch` have expectation sum_answer CE / answer tokens (an ELBO per answer token); `token` does not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Generator, Tensor

SFT_NORMALIZATIONS = ("sample", "batch", "token")


def answer_positions(prompt_lengths: Tensor, length: int) -> Tensor:
    """bool [B, T]: True at the answer positions (index >= that row's prompt length; [B] or [B, 1] lengths)."""
    positions = torch.arange(length, device=prompt_lengths.device)
    return positions[None, :] >= prompt_lengths.reshape(-1).to(positions.device)[:, None]


def _per_position(p_mask: Tensor, shape: torch.Size, device: torch.device) -> Tensor:
    """p_mask as [B, T]: per sample ([B] or [B, 1], the contract) or already per position ([B, T], as in
    GUIDELINES.md's `forward_process`)."""
    p = p_mask.to(device)
    return p if p.shape == shape else p.reshape(-1)[:, None].expand(shape)


def sft_forward_process(
    input_ids: Tensor,
    prompt_lengths: Tensor,
    t: Tensor,
    *,
    eps: float,
    mask_id: int,
    generator: Generator | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Mask the answers of `input_ids[B, T]` at times `t[B]`: returns (noisy_ids, masked[B, T], p_mask[B]).

    p_mask = (1 - eps) t + eps per sample (LLaDA GUIDELINES.md); each answer position is masked independently with
    probability p_mask[b] (one U[0, 1) draw per position, from `generator`); prompt positions are never masked.
    """
    p_mask = (1.0 - eps) * t.reshape(-1) + eps  # LLaDA GUIDELINES.md: p_mask = (1 - eps) * t + eps
    device = generator.device if generator is not None else input_ids.device
    u = torch.rand(tuple(input_ids.shape), generator=generator, device=device).to(input_ids.device)
    answer = answer_positions(prompt_lengths, input_ids.shape[1])
    masked = (u < p_mask.to(input_ids.device)[:, None]) & answer
    return input_ids.masked_fill(masked, mask_id), masked, p_mask


def _masked_ce(logits: Tensor, input_ids: Tensor, masked: Tensor) -> Tensor:
    """CE[B, T] at the masked positions (zero elsewhere), in float32 or wider (only masked rows upcast)."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    ce = F.cross_entropy(logits[masked].to(dtype), input_ids[masked], reduction="none")
    return torch.zeros(input_ids.shape, dtype=dtype, device=logits.device).masked_scatter(masked, ce)


def sft_loss(
    logits: Tensor,
    input_ids: Tensor,
    masked: Tensor,
    p_mask: Tensor,
    prompt_lengths: Tensor,
    *,
    normalization: str = "sample",
) -> Tensor:
    """LLaDA's SFT loss (module docstring): sum of CE / p over the masked answer tokens, normalised per sample
    by its answer length (padding included) and averaged over the batch (`sample`, LLaDA), or `batch` / `token`."""
    if normalization not in SFT_NORMALIZATIONS:
        raise ValueError(f"normalization={normalization!r} is not one of {', '.join(SFT_NORMALIZATIONS)}")
    batch, length = input_ids.shape
    weighted = _masked_ce(logits, input_ids, masked)
    weighted = weighted / _per_position(p_mask, input_ids.shape, logits.device)  # CE / p (GUIDELINES.md)
    per_row = weighted.sum(dim=1)
    answer_len = (length - prompt_lengths.reshape(-1).to(logits.device)).to(per_row.dtype)
    if normalization == "sample":  # LLaDA GUIDELINES.md: ce_loss / answer_lengths, then / B
        return (per_row / answer_len.clamp_min(1)).sum() / batch
    if normalization == "batch":  # SMDM sft/finetune_mdm.py: / (B * T - prompt_length.sum())
        return per_row.sum() / answer_len.sum().clamp_min(1)
    return per_row.sum() / masked.sum().clamp_min(1)  # token-level mean over the predicted (masked) tokens


def sft_elbo(logits: Tensor, input_ids: Tensor, masked: Tensor, p_mask: Tensor) -> Tensor:
    """Per-row conditional ELBO term [B]: sum over masked answer tokens of CE / p (nats; its mean over t is an
    upper bound on -log p(answer | prompt), LLaDA Eq. 5 / GUIDELINES.md)."""
    return (_masked_ce(logits, input_ids, masked) / _per_position(p_mask, input_ids.shape, logits.device)).sum(dim=1)


def answer_next_token_ce(logits: Tensor, input_ids: Tensor, prompt_lengths: Tensor) -> tuple[Tensor, Tensor]:
    """(CE[B, T-1] of predicting token i+1 from logits i, bool [B, T-1] True where token i+1 is an answer token).

    The ARM's SFT targets are exactly the answer tokens (padding EOS included): the prompt is context only
    (SMDM sft/finetune_ar.py trains on the response tokens only).
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    pred = logits[:, :-1].to(dtype)
    ce = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), input_ids[:, 1:].reshape(-1), reduction="none")
    targets = answer_positions(prompt_lengths, input_ids.shape[1])[:, 1:]
    return ce.view(input_ids.shape[0], -1), targets


def arm_sft_loss(logits: Tensor, input_ids: Tensor, prompt_lengths: Tensor, *, normalization: str = "sample") -> Tensor:
    """Next-token CE on answer tokens only, normalised like `sft_loss` (sample: per row by its answer length then
    averaged; batch and token: by the batch's answer tokens, every answer token being predicted)."""
    if normalization not in SFT_NORMALIZATIONS:
        raise ValueError(f"normalization={normalization!r} is not one of {', '.join(SFT_NORMALIZATIONS)}")
    ce, targets = answer_next_token_ce(logits, input_ids, prompt_lengths)
    ce = ce * targets
    if normalization == "sample":
        return (ce.sum(dim=1) / targets.sum(dim=1).clamp_min(1)).mean()
    return ce.sum() / targets.sum().clamp_min(1)
