"""Text in, text out: the run's own sampler (LLaDA `generate` or ARM `generate_ar`) behind one function.

An empty prompt becomes the document separator (EOS), the token that precedes every document in training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llada_lightning.config.errors import ConfigError

if TYPE_CHECKING:
    from llada_lightning.inference.loading import LoadedRun

DEFAULT_BLOCK = 32


def default_block_length(gen_length: int) -> int:
    """32 (LLaDA's usual block) when it divides `gen_length`, else one block of `gen_length`."""
    return DEFAULT_BLOCK if gen_length % DEFAULT_BLOCK == 0 else gen_length


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

    LLaDA: `generate` with `steps` (default `gen_length`) and `block_length` (default `default_block_length`);
    ARM: `generate_ar` with `max_new_tokens = gen_length`, `top_k`, `top_p`. `seed` seeds a private generator
    (None: torch's global RNG). Bad sampler arguments raise ConfigError naming the numbers.
    """
    import torch

    from llada_lightning.sampling import generate, generate_ar

    if gen_length < 1:
        raise ConfigError(f"gen_length={gen_length}: must be >= 1")
    prompt = torch.tensor(prompt_ids or [loaded.eos_id], dtype=torch.long, device=loaded.device)[None]
    gen = None
    if seed is not None:
        gen = torch.Generator(device=loaded.device)
        gen.manual_seed(int(seed))
    try:
        if loaded.is_causal:
            out = generate_ar(
                loaded.model,
                prompt,
                max_new_tokens=gen_length,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                eos_id=loaded.eos_id if stop_at_eos else None,
                generator=gen,
            )
        else:
            out = generate(
                loaded.model,
                prompt,
                gen_length=gen_length,
                steps=gen_length if steps is None else steps,
                block_length=default_block_length(gen_length) if block_length is None else block_length,
                temperature=temperature,
                cfg_scale=cfg_scale,
                remasking=remasking,
                mask_id=loaded.mask_id,
                prompt_cache=prompt_cache,
                generator=gen,
            )
    except ValueError as exc:
        raise ConfigError(f"{exc}; adjust the generation settings") from exc
    new = [int(t) for t in out[0, prompt.shape[1] :].tolist()]
    if stop_at_eos and loaded.eos_id in new:
        new = new[: new.index(loaded.eos_id)]
    return new


def sample_text(loaded: LoadedRun, prompt: str, *, gen_length: int = 64, **kwargs: Any) -> str:
    """`prompt` followed by the decoded continuation (keywords as in `generate_ids`)."""
    return prompt + loaded.decode(generate_ids(loaded, loaded.encode(prompt), gen_length=gen_length, **kwargs))
