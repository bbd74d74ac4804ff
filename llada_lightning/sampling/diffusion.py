"""LLaDA's reverse process (Nie et al. 2025, Alg. 4-5; `generate.py` of ML-GSAI/LLaDA), vectorised over the batch.

    x = prompt + gen_length masks; blocks of block_length filled left to right, steps / num_blocks steps each
    per block: n[b, i] = masked_in_block[b] // steps_per_block, +1 for the first (masked % steps) steps
    per step:  logits of all positions (optionally with CFG); candidate x0 = argmax(logits / T + Gumbel)
               (float64; T = 0: argmax); confidence = softmax(logits)[x0] (low_confidence) or U(0, 1) (random);
               the n[b, i] most confident still-masked positions of the current block are committed
    threshold tau (Fast-dLLM): also every candidate with confidence >= tau (>= 1 per step); steps=None: until full

Differences from the reference code, all deliberate:
- the top-n commit is one sort for the whole batch (reference: a Python loop over rows);
- left-padded batches with an attention mask; padding never changes; only mask tokens inside the generated
  region are candidates (a prompt may itself contain the mask id and it stays untouched);
- CFG concatenates the attention mask too, so it works with and without one;
- when `mask_id` is a column of the head (mask token inside the vocabulary), that column is never a candidate
  (committing the mask token would leave a position masked while counting it as done); confidences are still
  the model's softmax over all columns, so whenever the mask token is not the argmax nothing differs;
- `eos_id` + `fill_after_eos=True`: see `generate`;
- `logits_eos_inf` / `confidence_eos_eot_inf` (generate.py's EOS options for instruct models): the confidence
  option defers EOS/EoT candidates for real (generate.py edits `logits_with_noise` after x0 was drawn, which
  changes nothing for EOS) and keeps every step's quota (see `generate`);
- `threshold`, `cache="prefix" | "dual"` (`prompt_cache=True` = "prefix"): Fast-dLLM's parallel decoding and KV
  caches (Wu et al. 2025; NVlabs/Fast-dLLM `llada/generate.py`), batched and opt-in; the caches are approximate
  (see `generate`). Fast-dLLM's functions take one prompt (a Python loop over rows in `get_transfer_index`);
  here every option is batched, a row whose block is full waits unchanged until the others' are, and each row's
  steps are counted on its own (`GenerationOutput.row_steps`);
- a padded batch gives a `Transformer` per-row RoPE positions (each row's first real token at 0, as when alone),
  so a row's logits, and therefore its tokens, do not depend on the other rows' lengths (with positions 0..T-1
  for all rows they differ by rounding, which can flip a close confidence comparison).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Generator, Tensor

from llada_lightning.sampling.common import (
    Model,
    check_cfg_scale,
    check_prompt,
    guided_logits,
    padded_positions,
    takes_positions,
)

Generators = Generator | Sequence[Generator] | None  # one for the batch, or one per row
REMASKING = ("low_confidence", "random")
CACHES = ("prefix", "dual")
# confidence_eos_eot_inf: below every real confidence (probabilities and U(0, 1) draws lie in [0, 1]) but above
# the non-candidates' -inf, so select_top ranks EOS/EoT candidates last yet still fills a step's quota with them
DEFERRED_CONFIDENCE = -1.0


class GenerationOutput(NamedTuple):
    """What `generate(..., return_history=True)` returns.

    - `sequences` [B, P + G];
    - `commit_step` [B, P + G]: the 0-based step of its row at which each generated position was committed (-1 for
      prompt positions and for positions never committed). Steps are counted per row (see `generate`); without
      `threshold` or `fill_after_eos`, and with steps <= gen_length, every row takes every step, and a row's step
      is the global one, block * steps_per_block + i;
    - `forward_passes`: the number of model calls (a CFG step is one call on the doubled batch [cond; un]);
    - `row_steps` [B]: each row's number of steps, those in which its current block still held a mask (Fast-dLLM's
      NFE of the row alone, as its `generate` counts them for batch 1); at most `forward_passes`.
    """

    sequences: Tensor
    commit_step: Tensor
    forward_passes: int
    row_steps: Tensor


def num_transfer_tokens(masked_count: Tensor, steps: int) -> Tensor:
    """Tokens to commit at each of `steps` steps, per row: [B] counts -> [B, steps] (LLaDA
    `get_num_transfer_tokens`; the linear schedule commits a constant expected number per step):
    `count // steps` each, plus one for the first `count % steps` steps. Example: 7 over 3 -> [3, 2, 2]."""
    base, remainder = masked_count // steps, masked_count % steps
    step = torch.arange(steps, device=masked_count.device)
    return base[:, None] + (step[None, :] < remainder[:, None]).long()


def uniform(
    shape: tuple[int, ...], generator: Generators, device: torch.device, active: Tensor | None = None
) -> Tensor:
    """float64 U(0, 1) draws of `shape` [B, ...]: from one generator for the whole batch, or from one generator per
    row (a sequence of B), each advanced only for the rows in `active` (the rows that take this step), so a sampled
    row's draws, like its tokens, do not depend on the rest of the batch. Rows left out get 0.5 (never used)."""
    if generator is None or isinstance(generator, Generator):
        return torch.rand(shape, dtype=torch.float64, device=device, generator=generator)
    rows = [
        torch.rand(shape[1:], dtype=torch.float64, device=device, generator=g)
        if active is None or bool(active[b])
        else torch.full(shape[1:], 0.5, dtype=torch.float64, device=device)
        for b, g in enumerate(generator)
    ]
    return torch.stack(rows)


def gumbel_argmax(
    logits: Tensor, temperature: float, generator: Generators = None, active: Tensor | None = None
) -> Tensor:
    """A sample of softmax(logits / T) per position via Gumbel-max in float64 (LLaDA `add_gumbel_noise`:
    argmax exp(logits) / (-log U)^T == argmax logits / T - log(-log U)); float64 because low-precision
    Gumbel noise degrades generation (Zheng et al. 2024, arXiv 2409.02908). T = 0: plain argmax.
    `generator`, `active`: see `uniform`."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    u = uniform(tuple(logits.shape), generator, logits.device, active)
    return (logits.double() / temperature - torch.log(-torch.log(u))).argmax(dim=-1)


def select_top(confidence: Tensor, n: Tensor) -> Tensor:
    """bool [B, N]: the `n[b]` highest confidences of each row, for all rows at once (one stable sort, ties to
    the lower index). Rows with fewer finite entries than n[b] also select -inf entries: AND with the
    candidates."""
    b, length = confidence.shape
    order = confidence.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(length, device=order.device).expand(b, length))
    return ranks < n[:, None]


@torch.no_grad()
def generate(
    model: Model,
    prompt_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    gen_length: int,
    steps: int | None = None,
    block_length: int,
    temperature: float = 0.0,
    cfg_scale: float = 0.0,
    remasking: str = "low_confidence",
    mask_id: int,
    eos_id: int | None = None,
    fill_after_eos: bool = False,
    logits_eos_inf: bool = False,
    confidence_eos_eot_inf: bool = False,
    eot_id: int | None = None,
    threshold: float | None = None,
    cache: str | None = None,
    prompt_cache: bool = False,
    generator: Generators = None,
    return_history: bool = False,
) -> Tensor | GenerationOutput:
    """Generate `gen_length` tokens after each (left-padded) prompt with LLaDA's reverse process.

    Args:
        model: any callable `(input_ids [B, T], attention_mask=[B, T]) -> logits [B, T, V]` (or an output with
            `.logits`); the mask is passed as the callable takes it (`sampling.common.mask_passing`). A callable
            with a `positions` keyword (`llada_lightning.models.Transformer`) gets per-row RoPE positions for a
            padded batch (`common.padded_positions`), so a row's logits do not depend on its padding.
        prompt_ids: [B, P] (or [P]) token ids, left-padded when `attention_mask` is given.
        attention_mask: None or [B, P], 1 = real token; padding stays padding and is hidden from every query.
        gen_length, steps, block_length: `gen_length % block_length == 0` and `steps % num_blocks == 0`. `steps`
            may be None only with `threshold`.
        temperature: 0 = greedy; > 0 = Gumbel-max sampling from softmax(logits / temperature).
        cfg_scale: unsupervised classifier-free guidance scale (0 = off, one forward per step).
        remasking: "low_confidence" (commit the most probable candidates) or "random".
        mask_id: the mask token fed to the model.
        eos_id, fill_after_eos: with both set, as soon as a row has committed `eos_id` anywhere in its generated
            region, every still-masked position after its first EOS is set to `eos_id` in the same step
            (recorded as committed at that step). Those positions cost no further transfer budget, and once
            every row's current block is complete the remaining steps of the block, and whole later blocks,
            are skipped without calling the model (LLaDA pads SFT answers with EOS, so after an EOS only EOS
            follows). `eos_id` alone changes nothing.
        logits_eos_inf: the EOS logit is -inf before the candidate x0 is drawn (and in the softmax of the
            confidence), so EOS is never generated (generate.py `logits_eos_inf`). Needs `eos_id`.
        confidence_eos_eot_inf: candidates whose x0 is EOS (or `eot_id`, when given) get the confidence
            `DEFERRED_CONFIDENCE` (-1): each step commits them only when no other candidate of the block is left
            for its quota, so the answer's end is decided last (generate.py `confidence_eos_eot_inf`, which has no
            effect on EOS there). The quota is unchanged: every step still commits `n[b, i]` positions. Needs
            `eos_id`.
        eot_id: the end-of-turn token (<|eot_id|>) that `confidence_eos_eot_inf` defers too; alone it changes
            nothing.
        threshold: tau in (0, 1]: Fast-dLLM's confidence-aware parallel decoding (Wu et al. 2025, Sec. 3.3;
            `get_transfer_index` in NVlabs/Fast-dLLM `llada/generate.py`): each step commits, within the current
            block, every candidate whose confidence is >= tau, and always at least the most confident one; a block
            is stepped until it is filled, so the number of steps (and forward passes) depends on the model.
            `steps=None`: exactly that rule (at least one token per step, at most `block_length` steps per block);
            with `steps`, each step commits at least the linear schedule's quota `n[b, i]`, so `steps /
            num_blocks` is the most steps a block takes. Needs remasking="low_confidence".
        cache: None (exact: every step runs the whole sequence), "prefix" or "dual" (Fast-dLLM's KV caches,
            approximate for a bidirectional model; the first step of each block is one exact full forward that
            fills the cache):
            "prefix": the keys/values of the first `P + block_start` positions (prompt + finished blocks) are
            frozen; the block's other steps run only the current block and the masked tokens after it;
            "dual": the keys/values of every position are kept; the block's other steps run only the current
            block (RoPE positions start..end-1), attending to the cached prefix, the block's own fresh
            keys/values (which replace the cached ones) and the cached keys/values of the masked suffix.
            Both are exact for a causal model (its cached keys never depend on later tokens and the window's
            queries never see the suffix). Needs a model with `new_kv_cache()` and a `cache` keyword
            (`llada_lightning.models.Transformer`); raises ValueError otherwise.
        prompt_cache: True is the older spelling of cache="prefix" (with another `cache`: ValueError).
        generator: the source of all randomness (Gumbel noise, random remasking) for reproducible sampling: one
            generator for the batch, or a sequence of one generator per row, each advanced only on its row's own
            steps (then a sampled row's tokens do not depend on the rest of the batch either).
        return_history: return a `GenerationOutput`: the sequences, the step at which each position was committed,
            the number of forward passes and each row's number of steps.

    Steps are counted per row: a row's step is a step in which its current block still held a mask. A row whose
    block is complete waits unchanged while other rows finish theirs, so a row's tokens and history do not depend
    on the rest of the batch (the whole batch goes on to the next block together); with temperature > 0 or random
    remasking, that holds when each row has its own generator (`generator=[g_0, ..., g_{B-1}]`).

    Returns:
        [B, P + gen_length] token ids, or `GenerationOutput` with `return_history`.
    """
    prompt_ids, prompt_mask = check_prompt(prompt_ids, attention_mask)
    num_blocks, steps_per_block = _check_args(
        gen_length, steps, block_length, temperature, cfg_scale, remasking, eos_id, fill_after_eos, threshold
    )
    if (logits_eos_inf or confidence_eos_eot_inf) and eos_id is None:
        flag = "logits_eos_inf" if logits_eos_inf else "confidence_eos_eot_inf"
        raise ValueError(f"{flag}=True needs eos_id")
    cache_mode = _check_cache(model, cache, prompt_cache)
    batch, prompt_len = prompt_ids.shape
    if not (generator is None or isinstance(generator, Generator)) and len(generator) != batch:
        raise ValueError(f"generator: {len(generator)} per-row generators for a batch of {batch} prompts")
    device = prompt_ids.device
    x = torch.cat((prompt_ids, prompt_ids.new_full((batch, gen_length), mask_id)), dim=1)
    full_mask = positions = None
    if prompt_mask is not None:
        full_mask = torch.cat((prompt_mask, prompt_mask.new_ones(batch, gen_length)), dim=1)
        if takes_positions(model):
            positions = padded_positions(full_mask)
    # CFG's unconditional pass masks the real prompt tokens (padding stays padding)
    prompt_positions = torch.zeros_like(x, dtype=torch.bool)
    prompt_positions[:, :prompt_len] = True if prompt_mask is None else prompt_mask
    inputs = _Inputs(model, full_mask, prompt_positions, positions, cfg_scale, mask_id, cache_mode)
    commit_step = torch.full_like(x, -1)
    row_steps = torch.zeros(batch, dtype=torch.long, device=device)
    forward_passes = 0
    eot = eot_id if confidence_eos_eot_inf else None
    deferred = torch.tensor([t for t in (eos_id, eot) if t is not None], dtype=torch.long, device=device)

    for block in range(num_blocks):
        start = prompt_len + block * block_length
        end = start + block_length
        schedule = None
        if steps_per_block is not None:
            schedule = num_transfer_tokens((x[:, start:end] == mask_id).sum(dim=1), steps_per_block)
        kv = None
        i = 0
        # threshold without steps commits at least one token per step, so block_length steps fill any block (the
        # bound also ends the loop on a model whose confidences are NaN, which would commit nothing)
        while i < (steps_per_block if steps_per_block is not None else block_length):
            candidates = x[:, start:end] == mask_id
            active = candidates.any(dim=1)
            if not active.any():
                break  # the block is complete (threshold, fill_after_eos): no model call
            logits, kv = inputs.block_logits(x, start, end, kv)
            forward_passes += 1
            if logits_eos_inf or confidence_eos_eot_inf:
                _check_token_ids(logits.shape[-1], eos_id, eot)
            if logits_eos_inf:  # generate.py: logits[:, :, eos] = -inf before add_gumbel_noise (softmax too)
                logits = logits.clone()
                logits[..., eos_id] = float("-inf")
            candidate_logits = logits
            if mask_id < logits.shape[-1]:  # never commit the mask token itself
                candidate_logits = logits.clone()
                candidate_logits[..., mask_id] = float("-inf")
            x0 = gumbel_argmax(candidate_logits, temperature, generator, active)
            if remasking == "low_confidence":  # the model's own softmax, over every column (as generate.py)
                probs = torch.softmax(logits.double(), dim=-1)
                confidence = probs.gather(-1, x0[..., None]).squeeze(-1)
            else:
                confidence = uniform(tuple(x0.shape), generator, device, active)
            if confidence_eos_eot_inf:  # generate.py's EOS/EoT confidence, applied before the ranking
                confidence = confidence.masked_fill(torch.isin(x0, deferred), DEFERRED_CONFIDENCE)
            confidence = confidence.masked_fill(~candidates, float("-inf"))
            quota = schedule[:, i] if schedule is not None else torch.zeros_like(row_steps)
            if threshold is None:
                commit = select_top(confidence, quota)
            else:  # Fast-dLLM get_transfer_index: the top one (or the quota) and every confidence >= tau
                commit = select_top(confidence, quota.clamp(min=1)) | (confidence >= threshold)
            commit &= candidates
            x[:, start:end] = torch.where(commit, x0, x[:, start:end])
            commit_step[:, start:end] = torch.where(commit, row_steps[:, None], commit_step[:, start:end])
            if fill_after_eos:
                _fill_after_eos(x, commit_step, prompt_len, eos_id, mask_id, row_steps)
            row_steps += active.long()
            i += 1

    if return_history:
        return GenerationOutput(x, commit_step, forward_passes, row_steps)
    return x


class _Inputs:
    """What each step feeds the model, per cache mode: a full forward at a block's first step (filling the cache,
    then cut to the prefix or windowed to the block), the cached forms afterwards (see `generate`'s `cache`)."""

    def __init__(
        self,
        model: Model,
        mask: Tensor | None,
        prompt_positions: Tensor,
        positions: Tensor | None,
        cfg_scale: float,
        mask_id: int,
        cache_mode: str | None,
    ) -> None:
        self.model, self.mask, self.prompt_positions, self.positions = model, mask, prompt_positions, positions
        self.cfg_scale, self.mask_id, self.cache_mode = cfg_scale, mask_id, cache_mode

    def block_logits(self, x: Tensor, start: int, end: int, kv: Any) -> tuple[Tensor, Any]:
        """(logits [B, end - start, V] of the block, the cache for the block's next steps: None without one)."""
        if kv is None:  # no cache, or the block's first step: the whole sequence
            kv = self.model.new_kv_cache() if self.cache_mode else None
            logits = self._logits(x, slice(None), kv)[:, start:end]
            if self.cache_mode == "prefix":  # Fast-dLLM generate_with_prefix_cache: keep [:block_start]
                kv.crop(start).freeze()
            elif self.cache_mode == "dual":  # Fast-dLLM generate_with_dual_cache: replace_position = the block
                kv.set_window(start, end)
            return logits, kv
        stop = x.shape[1] if self.cache_mode == "prefix" else end
        return self._logits(x, slice(start, stop), kv)[:, : end - start], kv

    def _logits(self, x: Tensor, part: slice, kv: Any) -> Tensor:
        mask = None if self.mask is None else self.mask[:, part]
        positions = None if self.positions is None else self.positions[:, part]
        return guided_logits(
            self.model, x[:, part], mask, self.prompt_positions[:, part], self.cfg_scale, self.mask_id, kv, positions
        )


def _check_cache(model: Model, cache: str | None, prompt_cache: bool) -> str | None:
    """The cache mode (None, "prefix" or "dual") from `cache` and its alias `prompt_cache`, or a ValueError."""
    if cache is not None and cache not in CACHES:
        raise ValueError(f"unknown cache {cache!r}; valid: {', '.join(CACHES)} (or None: no cache, exact)")
    if prompt_cache and cache not in (None, "prefix"):
        raise ValueError(f"prompt_cache=True means cache='prefix', but cache={cache!r} was given; pass only cache")
    mode = "prefix" if prompt_cache else cache
    if mode is not None and not callable(getattr(model, "new_kv_cache", None)):
        given = "prompt_cache=True" if prompt_cache else f"cache={mode!r}"
        raise ValueError(
            f"{given} needs a model with KV-cache support (a llada_lightning.models.Transformer: "
            f"`new_kv_cache()` and a `cache=` keyword); got {type(model).__name__}"
        )
    return mode


def _fill_after_eos(x: Tensor, commit_step: Tensor, prompt_len: int, eos_id: int, mask_id: int, step: Tensor) -> None:
    """In place: masked generated positions after a row's first committed EOS become EOS (committed at the row's
    `step` [B])."""
    generated = x[:, prompt_len:]
    after_eos = (generated == eos_id).long().cumsum(dim=1) > 0
    after_eos[:, 1:] = after_eos[:, :-1].clone()
    after_eos[:, 0] = False
    fill = after_eos & (generated == mask_id)
    x[:, prompt_len:] = generated.masked_fill(fill, eos_id)
    commit_step[:, prompt_len:] = torch.where(fill, step[:, None], commit_step[:, prompt_len:])


def _check_token_ids(vocab: int, eos_id: int | None, eot_id: int | None) -> None:
    """ValueError unless the EOS options' token ids are columns of the model's logits [..., vocab]."""
    for name, value in (("eos_id", eos_id), ("eot_id", eot_id)):
        if value is not None and not 0 <= value < vocab:
            raise ValueError(f"{name}={value} is not a column of the model's logits (vocabulary of {vocab})")


def _check_args(
    gen_length: int,
    steps: int | None,
    block_length: int,
    temperature: float,
    cfg_scale: float,
    remasking: str,
    eos_id: int | None,
    fill_after_eos: bool,
    threshold: float | None,
) -> tuple[int, int | None]:
    """(num_blocks, steps_per_block or None), or a ValueError naming the offending argument."""
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
            raise ValueError(f"threshold must be a number in (0, 1], got {threshold!r}")
        if remasking != "low_confidence":
            raise ValueError(f"threshold={threshold} needs remasking='low_confidence', got remasking={remasking!r}")
    elif steps is None:
        raise ValueError("steps is required (a positive integer) unless threshold is given")
    checked = [("gen_length", gen_length), ("block_length", block_length)]
    for name, value in checked + ([] if steps is None else [("steps", steps)]):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if gen_length % block_length:
        raise ValueError(f"gen_length={gen_length} must be divisible by block_length={block_length}")
    num_blocks = gen_length // block_length
    if steps is not None and steps % num_blocks:
        raise ValueError(
            f"steps={steps} must be divisible by the number of blocks "
            f"gen_length/block_length={gen_length}/{block_length}={num_blocks}"
        )
    if remasking not in REMASKING:
        raise ValueError(f"unknown remasking strategy {remasking!r}; valid: {', '.join(REMASKING)}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    check_cfg_scale(cfg_scale)
    if fill_after_eos and eos_id is None:
        raise ValueError("fill_after_eos=True needs eos_id")
    return num_blocks, None if steps is None else steps // num_blocks
