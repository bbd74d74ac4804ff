"""Calling "any callable that returns logits", classifier-free guidance, and prompt checks shared by the
diffusion sampler, the ARM sampler and the likelihood estimators.

A model is any callable `model(input_ids [B, T], attention_mask) -> logits [B, T, V]` (or an object with `.logits`,
as Hugging Face models return). How the mask is passed follows the callable's signature (`mask_passing`): as the
`attention_mask` keyword when it has one (or **kwargs), else as its second positional argument; when the mask is
None it is passed only to a callable that requires it, so `lambda ids: ...` works whenever no padding mask is
needed, and `def model(input_ids, attention_mask)` works with or without one. `cache` is always a keyword, and so
is `positions` (per-row RoPE positions), passed only to a callable whose signature names it (`takes_positions`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

Model = Callable[..., Any]


def mask_passing(model: Model) -> tuple[str, bool]:
    """How `model` takes an attention mask: ("keyword" | "positional" | "none", whether it is required).

    Read from the callable's signature (an `nn.Module`'s is its class's `forward`, read once per class); a
    callable without a readable signature gets the mask as the `attention_mask` keyword, and only when there is one.
    """
    if isinstance(model, torch.nn.Module):
        return _module_mask_passing(type(model))
    return _read_signature(model, skip_self=False)


@functools.cache
def _module_mask_passing(cls: type) -> tuple[str, bool]:
    return _read_signature(cls.forward, skip_self=True)


def _read_signature(fn: Callable[..., Any], *, skip_self: bool) -> tuple[str, bool]:
    empty = inspect.Parameter.empty
    try:
        params = list(inspect.signature(fn).parameters.values())[int(skip_self) :]
    except (TypeError, ValueError):
        return "keyword", False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    named = next((p for p in params if p.name == "attention_mask"), None)
    if named is not None and named.kind in (named.POSITIONAL_OR_KEYWORD, named.KEYWORD_ONLY):
        return "keyword", named.default is empty
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return "keyword", False
    if len(positional) >= 2:
        return "positional", positional[1].default is empty
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return "positional", False
    return "none", False


def takes_positions(model: Model) -> bool:
    """Whether `model` takes a `positions` keyword (RoPE positions, as `llada_lightning.models.Transformer`)."""
    if isinstance(model, torch.nn.Module):
        return _module_takes_positions(type(model))
    return _names_positions(model, skip_self=False)


@functools.cache
def _module_takes_positions(cls: type) -> bool:
    return _names_positions(cls.forward, skip_self=True)


def _names_positions(fn: Callable[..., Any], *, skip_self: bool) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())[int(skip_self) :]
    except (TypeError, ValueError):
        return False
    return any(p.name == "positions" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)


def padded_positions(attention_mask: Tensor) -> Tensor:
    """[B, T] positions that count real tokens only: a left-padded row's first real token is at 0, as when the row
    is alone (padding gets 0; its keys are hidden anyway). RoPE is relative, so this changes attention scores only
    by rounding, and that rounding is what would otherwise make a row's logits depend on the batch's padding."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def call_model(
    model: Model,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    cache: Any = None,
    positions: Tensor | None = None,
) -> Tensor:
    """logits [B, T, V] of `model` on `input_ids`, the mask passed as `mask_passing` says; unwraps `.logits`.
    `cache` and `positions` are keywords, passed only when not None."""
    how, required = mask_passing(model)
    args: list[Any] = [input_ids]
    kwargs: dict[str, Any] = {}
    if attention_mask is not None or required:
        if how == "keyword":
            kwargs["attention_mask"] = attention_mask
        elif how == "positional":
            args.append(attention_mask)
        else:
            raise TypeError(f"{type(model).__name__} takes no attention mask: pass attention_mask=None (no padding)")
    if cache is not None:
        kwargs["cache"] = cache
    if positions is not None:
        kwargs["positions"] = positions
    out = model(*args, **kwargs)
    return out.logits if hasattr(out, "logits") else out


def guided_logits(
    model: Model,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    prompt_positions: Tensor,
    cfg_scale: float,
    mask_id: int,
    cache: Any = None,
    positions: Tensor | None = None,
) -> Tensor:
    """Logits with unsupervised classifier-free guidance (LLaDA `generate.py`, Nie et al. 2025 App. B):

    `un + (cfg_scale + 1) * (cond - un)`, where `un` is the pass with the prompt tokens (`prompt_positions`,
    bool [B, T]) replaced by `mask_id`. The two passes run as one batch [cond; un]; the attention mask and
    per-row `positions` [B, T] (if any) are concatenated the same way. `cfg_scale == 0`: a single plain pass.
    """
    if cfg_scale == 0:
        return call_model(model, input_ids, attention_mask, cache, positions)
    uncond = input_ids.masked_fill(prompt_positions, mask_id)
    both = torch.cat((input_ids, uncond), dim=0)
    both_mask = None if attention_mask is None else torch.cat((attention_mask, attention_mask), dim=0)
    both_positions = None if positions is None else torch.cat((positions, positions), dim=0)
    cond_logits, un_logits = call_model(model, both, both_mask, cache, both_positions).chunk(2, dim=0)
    return un_logits + (cfg_scale + 1.0) * (cond_logits - un_logits)


def check_cfg_scale(cfg_scale: float) -> None:
    """A guidance scale is >= 0 (0 = off); a negative one would extrapolate away from the prompt."""
    if not cfg_scale >= 0:
        raise ValueError(f"cfg_scale must be >= 0 (0 = no guidance), got {cfg_scale}")


def check_prompt(prompt_ids: Tensor, attention_mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Validate a prompt batch: [B, P] (a 1-D prompt becomes [1, P]), integer ids, and a LEFT-padded
    attention mask of the same shape (generated tokens follow the last prompt position directly)."""
    if prompt_ids.dim() == 1:
        prompt_ids = prompt_ids[None]
        attention_mask = None if attention_mask is None else attention_mask.reshape(1, -1)
    if prompt_ids.dim() != 2:
        raise ValueError(f"prompt_ids must be [batch, prompt_len], got shape {tuple(prompt_ids.shape)}")
    if prompt_ids.dtype.is_floating_point or prompt_ids.dtype == torch.bool:
        raise ValueError(f"prompt_ids must hold integer token ids, got dtype {prompt_ids.dtype}")
    if attention_mask is None:
        return prompt_ids, None
    if attention_mask.shape != prompt_ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} != prompt_ids shape {tuple(prompt_ids.shape)}"
        )
    mask = attention_mask.bool()
    if (mask[:, :-1] & ~mask[:, 1:]).any():
        raise ValueError("prompts must be left-padded: attention_mask may not have a 0 after a 1 in a row")
    return prompt_ids, mask
