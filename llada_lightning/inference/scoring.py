"""Scoring text with a loaded run: the shared core of `llada eval` and the lm-evaluation-harness adapter.

- `encode_pair`: (context, continuation) -> token ids, lm-eval's convention: trailing spaces of the context move
  to the continuation, the pair is encoded as one string and split where the context's own tokens end; an empty
  context becomes the document separator (EOS), so every answer has something to condition on.
- `continuation_loglik`: log p(continuation | context): LLaDA the Monte Carlo lower bound (`mc_num` draws,
  `generator` for reproducibility), ARM the exact sum of next-token log-probabilities.
- `is_greedy`: would greedy decoding produce the continuation? ARM: argmax at every answer position (one pass).
  LLaDA: LLaDA's `suffix_greedy_prediction`: all answer tokens masked, one token committed per step, the most
  confident first (= `generate(steps = block_length = gen_length = L, temperature 0)`), compared with the answer.
- `rolling_loglik`: log p(text) over windows of at most `max_length` tokens (each token scored exactly once).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from llada_lightning.inference.loading import LoadedRun
    from llada_lightning.likelihood import LogLikelihood


def encode_pair(loaded: LoadedRun, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of (context, continuation); see the module docstring. The continuation may not be empty."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if not context:
        answer = loaded.encode(continuation)
        prompt = [loaded.eos_id]
    else:
        whole = loaded.encode(context + continuation)
        prompt = loaded.encode(context)
        answer = whole[len(prompt) :]
        if whole[: len(prompt)] != prompt:  # a merge across the boundary: encode separately instead
            answer = loaded.encode(continuation)
    if not answer:
        raise ValueError(f"the continuation {continuation!r} encodes to no tokens; it must hold some text")
    return prompt, answer


def fit_context(prompt: list[int], answer: list[int], max_length: int | None) -> list[int]:
    """Left-truncate the prompt so that prompt + answer fits in `max_length` (at least one prompt token stays)."""
    if max_length is None or len(prompt) + len(answer) <= max_length:
        return prompt
    return prompt[-max(1, max_length - len(answer)) :]


def request_generator(loaded: LoadedRun, seed: int, *texts: str) -> torch.Generator:
    """A generator seeded by `seed` and the request's text (`decoders.request_generator` on the run's device)."""
    from llada_lightning.inference.decoders import request_generator as seeded

    return seeded(loaded.device, seed, *texts)


def continuation_loglik(
    loaded: LoadedRun,
    prompt: Sequence[int],
    answer: Sequence[int],
    *,
    mc_num: int = 128,
    mc_batch_size: int = 32,
    cfg_scale: float = 0.0,
    generator: torch.Generator | None = None,
) -> LogLikelihood:
    """log p(answer | prompt) in nats, summed over the answer tokens (`loaded.decoder`: LLaDA MC lower bound;
    ARM exact)."""
    import torch

    p = torch.tensor(list(prompt), dtype=torch.long, device=loaded.device)
    a = torch.tensor(list(answer), dtype=torch.long, device=loaded.device)
    return loaded.decoder.loglikelihood(
        loaded.model, p, a, mc_num=mc_num, mc_batch_size=mc_batch_size, cfg_scale=cfg_scale, generator=generator
    )


def is_greedy(loaded: LoadedRun, prompt: Sequence[int], answer: Sequence[int], *, cfg_scale: float = 0.0) -> bool:
    """Whether greedy decoding from `prompt` reproduces `answer` exactly (see the module docstring); LLaDA decodes
    with the same classifier-free guidance `cfg_scale` as its likelihood (as `suffix_greedy_prediction`)."""
    import torch

    p = torch.tensor(list(prompt), dtype=torch.long, device=loaded.device)
    a = torch.tensor(list(answer), dtype=torch.long, device=loaded.device)
    with torch.no_grad():
        return loaded.decoder.is_greedy(loaded.model, p, a, cfg_scale=cfg_scale)


def rolling_windows(tokens: Sequence[int], prefix_id: int, max_length: int) -> list[tuple[list[int], list[int]]]:
    """(context, piece) pairs covering `tokens` in order, each token in exactly one piece.

    Pieces hold `max_length - 1` tokens; the first is conditioned on `prefix_id` alone (the document separator,
    lm-eval's BOS), later ones on the tokens just before them, as many as fit in `max_length` (lm-eval's
    disjoint rolling windows, so the last, shorter piece gets the longest context).
    """
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 for rolling windows, got {max_length}")
    full = [prefix_id, *tokens]
    size = max_length - 1
    out = []
    for start in range(0, len(tokens), size):
        piece = list(tokens[start : start + size])
        end = start + 1  # index in `full` of the piece's first token
        out.append((full[max(0, end - (max_length - len(piece))) : end], piece))
    return out


def rolling_loglik(
    loaded: LoadedRun,
    text: str,
    *,
    max_length: int,
    mc_num: int = 128,
    mc_batch_size: int = 32,
    seed: int = 0,
) -> float:
    """log p(text) in nats: the sum over `rolling_windows` (LLaDA: sum of MC lower bounds; ARM: exact)."""
    tokens = loaded.encode(text)
    total = 0.0
    for i, (context, piece) in enumerate(rolling_windows(tokens, loaded.eos_id, max_length)):
        gen = loaded.decoder.likelihood_generator(loaded.device, seed, text, str(i))
        total += continuation_loglik(
            loaded, context, piece, mc_num=mc_num, mc_batch_size=mc_batch_size, generator=gen
        ).mean
    return total
