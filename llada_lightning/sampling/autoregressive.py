"""Left-to-right sampling for the ARM baseline, with a KV cache for `llada_lightning.models.Transformer`.

Per step: logits of the last position / temperature -> top-k -> top-p (nucleus, Holtzman et al. 2020) ->
one sample (temperature 0: argmax). With the cache the prompt is run once and each step feeds one token;
without it (any callable) the whole sequence is recomputed each step; both give the same tokens.
"""

from __future__ import annotations

import torch
from torch import Generator, Tensor

from llada_lightning.sampling.common import Model, call_model, check_prompt


def top_k_top_p_filter(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """logits [..., V] with every token outside the top-k and outside the nucleus set to -inf.

    The nucleus is the smallest set of most probable tokens whose probability reaches `top_p` (a token is
    kept when the mass of the tokens strictly more probable than it is below `top_p`; the top token always
    stays). Top-k is applied first.
    """
    if top_k is not None and top_k < logits.shape[-1]:
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, logits.topk(top_k, dim=-1).indices, True)
        logits = logits.masked_fill(~keep, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.float().softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: Generator | None = None,
) -> Tensor:
    """One token per row from logits [B, V]: greedy for temperature 0, else softmax(filtered logits / T)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    filtered = top_k_top_p_filter(logits.float() / temperature, top_k, top_p)
    return torch.multinomial(filtered.softmax(dim=-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate_ar(
    model: Model,
    prompt_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: Generator | None = None,
    use_cache: bool | None = None,
) -> Tensor:
    """Sample up to `max_new_tokens` tokens after each (left-padded) prompt from a causal model.

    Args:
        model: a causal `Transformer` (`model.causal` True; a bidirectional one raises ValueError) or any
            callable `(input_ids, attention_mask) -> logits` (the mask passed as `common.mask_passing` says).
        prompt_ids, attention_mask: [B, P] (or [P]), left-padded when a mask is given.
        temperature: 0 = greedy; top_k / top_p: optional filters (top_k=1 is greedy).
        eos_id: a row that has produced `eos_id` emits only `eos_id` afterwards; generation stops early when
            every row has, and the rest is filled with `eos_id`.
        use_cache: None = use the KV cache when the model offers one (`new_kv_cache()`); False = recompute the
            whole sequence each step; True on a model without a cache raises ValueError.

    Returns:
        [B, P + max_new_tokens] token ids.
    """
    prompt_ids, prompt_mask = check_prompt(prompt_ids, attention_mask)
    _check_args(max_new_tokens, temperature, top_k, top_p)
    if getattr(model, "causal", None) is False:  # a Transformer built for a bidirectional objective
        raise ValueError("generate_ar needs a causal model (model.causal=True: an ARM); use generate() for LLaDA")
    has_cache = callable(getattr(model, "new_kv_cache", None))
    if use_cache and not has_cache:
        raise ValueError(f"use_cache=True needs a model with `new_kv_cache()`; got {type(model).__name__}")
    use_cache = has_cache if use_cache is None else use_cache

    batch = prompt_ids.shape[0]
    tokens = [prompt_ids]
    finished = torch.zeros(batch, dtype=torch.bool, device=prompt_ids.device)
    cache = model.new_kv_cache() if use_cache else None
    mask = prompt_mask
    logits = call_model(model, prompt_ids, prompt_mask, cache)[:, -1]
    for i in range(max_new_tokens):
        next_token = sample_next(logits, temperature, top_k, top_p, generator)
        if eos_id is not None:
            next_token = next_token.masked_fill(finished, eos_id)
            finished = finished | (next_token == eos_id)
        tokens.append(next_token[:, None])
        if i == max_new_tokens - 1:
            break
        if eos_id is not None and bool(finished.all()):
            tokens.append(prompt_ids.new_full((batch, max_new_tokens - i - 1), eos_id))
            break
        if cache is not None:
            logits = call_model(model, next_token[:, None], None, cache)[:, -1]
        else:
            if mask is not None:
                mask = torch.cat((mask, mask.new_ones(batch, 1)), dim=1)
            logits = call_model(model, torch.cat(tokens, dim=1), mask)[:, -1]
    return torch.cat(tokens, dim=1)


def _check_args(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
