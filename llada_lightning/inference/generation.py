"""Text in, text out: the run's own sampler (`loaded.decoder`: LLaDA `generate` or ARM `generate_ar`), one function.

An empty prompt becomes the document separator (EOS), the token that precedes every document in training.
`chat_reply` talks to a fine-tuned run (`llada sft`): the conversation is rendered with the run's chat template
and only the assistant's answer comes back. LLaDA decodes it semi-autoregressively (the paper's advice for instruct
models) in blocks of `block_length`, by default `default_block_length` (32 when it divides `gen_length`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.inference.decoders import DEFAULT_BLOCK, SamplingOptions, default_block_length

if TYPE_CHECKING:
    from llada_lightning.inference.loading import LoadedRun
    from llada_lightning.sft.chat import Message

__all__ = [
    "DEFAULT_BLOCK",
    "chat_reply",
    "check_fits_context",
    "default_block_length",
    "fit_history",
    "generate_ids",
    "sample_text",
]


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
    threshold: float | None = None,
    cache: str | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    logits_eos_inf: bool = False,
    confidence_eos_eot_inf: bool = False,
    seed: int | None = 0,
    stop_at_eos: bool = True,
) -> list[int]:
    """The generated token ids after `prompt_ids` (cut before the first EOS when `stop_at_eos`).

    LLaDA: `generate` with `steps` (default `gen_length`, at most `gen_length`; with `threshold`, default None),
    `block_length` (default `default_block_length`), Fast-dLLM's `threshold` (commit every token at least that
    confident) and `cache` ("prefix", the same as `prompt_cache=True`, or "dual"), and generate.py's EOS options
    (`logits_eos_inf`: EOS is never sampled; `confidence_eos_eot_inf`: EOS and the tokenizer's <|eot_id|>, when
    it has one, are committed last); ARM:
    `generate_ar` with `max_new_tokens = gen_length`, `top_k`, `top_p` (each decoder ignores the other's options).
    `seed` seeds a private generator (None: torch's global RNG). Bad settings, and a prompt + `gen_length` beyond
    `model.max_seq_len`, raise ConfigError naming the numbers before any model call.
    """
    if gen_length < 1:
        raise ConfigError(f"gen_length={gen_length}: must be >= 1")
    options = SamplingOptions(
        gen_length,
        steps,
        block_length,
        temperature,
        cfg_scale,
        remasking,
        prompt_cache,
        top_k,
        top_p,
        logits_eos_inf=logits_eos_inf,
        confidence_eos_eot_inf=confidence_eos_eot_inf,
        threshold=threshold,
        cache=cache,
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
    try:
        out = loaded.decoder.generate(
            loaded.model,
            prompt,
            options,
            eos_id=loaded.eos_id,
            generator=gen,
            stop_at_eos=stop_at_eos,
            eot_id=eot_id(loaded),
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


def eot_id(loaded: LoadedRun) -> int | None:
    """The id of the tokenizer's <|eot_id|> (the end of a chat turn), None when it has none."""
    from llada_lightning.sft.chat import EOT

    return loaded.tokenizer.token_to_id(EOT)


def check_messages(messages: list[Message]) -> None:
    """ConfigError unless `messages` is a non-empty list of {"role": system|user|assistant, "content": text}."""
    from llada_lightning.sft.chat import ROLES

    if not messages:
        raise ConfigError("the conversation is empty; pass at least one user message")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ConfigError(f"message {i} is not a {{'role': ..., 'content': text}} dict: {message!r:.80}")
        if message.get("role") not in ROLES:
            raise ConfigError(f"message {i} has role {message.get('role')!r}; use one of {', '.join(ROLES)}")


def chat_reply(loaded: LoadedRun, messages: list[Message], *, gen_length: int = 64, **kwargs: Any) -> str:
    """The assistant's answer to `messages` ([{"role", "content"}, ...], oldest first) from a fine-tuned run.

    The prompt is `loaded.chat_template().encode_prompt(messages)` (the conversation and the assistant's header);
    the answer is cut at the first EOS or <|eot_id|> and decoded without the template's markers. Keywords as in
    `generate_ids` (`stop_at_eos` excepted: the answer always ends there); LLaDA's block defaults to
    `default_block_length(gen_length)` and `confidence_eos_eot_inf` to False (pass True to commit EOS/EoT last).
    """
    if "stop_at_eos" in kwargs:
        raise TypeError("chat_reply() always stops at EOS/<|eot_id|>; do not pass stop_at_eos")
    check_messages(messages)
    prompt = loaded.chat_template().encode_prompt(messages)
    new = generate_ids(loaded, prompt, gen_length=gen_length, stop_at_eos=True, **kwargs)
    eot = eot_id(loaded)
    # sft/chat.py's layout (LLaDA GUIDELINES.md): an answer ends with EOS, any other turn with <|eot_id|>
    if eot is not None and eot in new:
        new = new[: new.index(eot)]
    return loaded.decode(new)


def fit_history(loaded: LoadedRun, messages: list[Message], gen_length: int) -> tuple[list[Message], int]:
    """`messages` without their oldest turns (a user message and the replies after it; leading system messages
    stay) until the chat prompt + `gen_length` fit `model.max_seq_len`, and the number of turns dropped. The
    last turn is never dropped: when it alone is too long, `generate_ids` reports it (`check_fits_context`)."""
    template = loaded.chat_template()
    keep = next((i for i, m in enumerate(messages) if m["role"] != "system"), len(messages))
    head, body = messages[:keep], messages[keep:]
    dropped = 0
    while len(body) > 1 and len(template.encode_prompt(head + body)) + gen_length > loaded.max_seq_len:
        cut = next((i for i in range(1, len(body)) if body[i]["role"] == "user"), len(body) - 1)
        body = body[cut:]
        dropped += 1
    return head + body, dropped
