"""Text in, text out: the run's own sampler (`loaded.decoder`: LLaDA `generate` or ARM `generate_ar`), one function.

An empty prompt becomes the document separator (EOS), the token that precedes every document in training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.inference.decoders import DEFAULT_BLOCK, SamplingOptions, default_block_length

if TYPE_CHECKING:
    from llada_lightning.inference.loading import LoadedRun

__all__ = ["DEFAULT_BLOCK", "check_fits_context", "default_block_length", "generate_ids", "sample_text"]


def check_fits_context(prompt_tokens: int, gen_length: int, max_seq_len: int) -> None:
    """ConfigError unless prompt + generated tokens fit in the model's context (`model.max_seq_len`)."""
    if prompt_tokens + gen_length > max_seq_len:
        raise ConfigError(
            f"the prompt ({prompt_tokens} tokens) + --gen-length {gen_length} = {prompt_tokens + gen_length} tokens "
            f"exceed the model's context (model.max_seq_len={max_seq_len}); shorten --prompt or lower --gen-length"
        )


def generate_ids(
    loaded: LoadedRun,
    prompt_ids: list[int],
    *,
    gen_length: int,
    steps: int | None = None,
    block_length: int | None = None,
    temperature: float = 0.0,
    cfg_scale: float = 0.0,
    remasking: str = "low_confidence",
    prompt_cache: bool = False,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = 0,
    stop_at_eos: bool = True,
) -> list[int]:
    """The generated token ids after `prompt_ids` (cut before the first EOS when `stop_at_eos`).

    LLaDA: `generate` with `steps` (default `gen_length`, at most `gen_length`) and `block_length` (default
    `default_block_length`); ARM: `generate_ar` with `max_new_tokens = gen_length`, `top_k`, `top_p` (each decoder
    ignores the other's options). `seed` seeds a private generator (None: torch's global RNG). Bad settings, and a
    prompt + `gen_length` beyond `model.max_seq_len`, raise ConfigError naming the numbers before any model call.
    """
    if gen_length < 1:
        raise ConfigError(f"gen_length={gen_length}: must be >= 1")
    options = SamplingOptions(
        gen_length, steps, block_length, temperature, cfg_scale, remasking, prompt_cache, top_k, top_p
    )
    loaded.decoder.check(options)
    prompt_list = prompt_ids or [loaded.eos_id]
    check_fits_context(len(prompt_list), gen_length, loaded.max_seq_len)
    import torch

    prompt = torch.tensor(prompt_list, dtype=torch.long, device=loaded.device)[None]
    gen = None
    if seed is not None:
        gen = torch.Generator(device=loaded.device)
        gen.manual_seed(int(seed))
    eos = loaded.eos_id if stop_at_eos else None
    try:
        out = loaded.decoder.generate(loaded.model, prompt, options, eos_id=eos, generator=gen)
    except ValueError as exc:
        raise ConfigError(f"{exc}; adjust the generation settings") from exc
    new = [int(t) for t in out[0, prompt.shape[1] :].tolist()]
    if stop_at_eos and loaded.eos_id in new:
        new = new[: new.index(loaded.eos_id)]
    return new


def sample_text(loaded: LoadedRun, prompt: str, *, gen_length: int = 64, **kwargs: Any) -> str:
    """`prompt` followed by the decoded continuation (keywords as in `generate_ids`)."""
    return prompt + loaded.decode(generate_ids(loaded, loaded.encode(prompt), gen_length=gen_length, **kwargs))
