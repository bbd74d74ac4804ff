"""The one place where using a run differs between LLaDA and the ARM: the run's `Decoder`, chosen once at load.

`decoder_for(objective_name, mask_id)` asks the objective registry whether the objective's attention is causal:
- `DiffusionDecoder` (a bidirectional objective: LLaDA): reverse-diffusion sampling (`sampling.generate`), the Monte
  Carlo lower bound on the log-likelihood (`likelihood.log_likelihood`) drawn from a generator seeded per request,
  and LLaDA's `suffix_greedy_prediction` greedy check;
- `AutoregressiveDecoder` (a causal objective: the ARM): left-to-right sampling (`sampling.generate_ar`), the exact
  log-likelihood (`likelihood.ar_log_likelihood`) and the argmax greedy check.

Callers (`generation`, `scoring`, `multiple_choice`, `lm_eval_adapter`, `cli`) use `loaded.decoder` and never ask
which kind of run they hold. No torch at module level.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from llada_lightning.config.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from llada_lightning.likelihood import LogLikelihood
    from llada_lightning.sampling.common import Model

DEFAULT_BLOCK = 32
# Sampling options only one decoder reads: generate_ids keyword -> `llada sample` flag.
DIFFUSION_OPTIONS = {
    "steps": "--steps",
    "block_length": "--block-length",
    "cfg_scale": "--cfg-scale",
    "remasking": "--remasking",
    "prompt_cache": "--prompt-cache",
    "threshold": "--threshold",
    "cache": "--cache",
    "logits_eos_inf": "--logits-eos-inf",
    "confidence_eos_eot_inf": "--confidence-eos-eot-inf",
}
AUTOREGRESSIVE_OPTIONS = {"top_k": "--top-k", "top_p": "--top-p"}
CACHES = ("prefix", "dual")  # sampling.diffusion.CACHES (this module imports no torch)


def default_block_length(gen_length: int) -> int:
    """32 (LLaDA's usual block) when it divides `gen_length`, else one block of `gen_length`."""
    return DEFAULT_BLOCK if gen_length % DEFAULT_BLOCK == 0 else gen_length


@dataclass(frozen=True)
class SamplingOptions:
    """Everything `generate_ids` accepts; each decoder reads its own options (see `Decoder.options`)."""

    gen_length: int
    steps: int | None = None
    block_length: int | None = None
    temperature: float = 0.0
    cfg_scale: float = 0.0
    remasking: str = "low_confidence"
    prompt_cache: bool = False
    top_k: int | None = None
    top_p: float | None = None
    logits_eos_inf: bool = False  # LLaDA generate.py: EOS is never sampled
    confidence_eos_eot_inf: bool = False  # LLaDA generate.py: EOS/<|eot_id|> candidates are committed last
    threshold: float | None = None  # Fast-dLLM: commit every candidate with confidence >= threshold (steps optional)
    cache: str | None = None  # Fast-dLLM KV cache: None (exact), "prefix" (= prompt_cache) or "dual"


def request_generator(device: torch.device | str, seed: int, *texts: str) -> torch.Generator:
    """A generator seeded by `seed` and the request's text: the same request always gets the same draws,
    whatever its position in a batch or task (stable across processes: crc32, not Python's hash)."""
    import torch

    digest = zlib.crc32("\x00".join(texts).encode("utf-8"))
    gen = torch.Generator(device=device)
    gen.manual_seed((int(seed) * 0x9E3779B1 + digest) % (2**63))
    return gen


class Decoder(Protocol):
    """How a kind of run samples and scores text (all tensors 1-D token ids unless said otherwise)."""

    label: ClassVar[str]  # how messages name the run: "a LLaDA" / "an ARM"
    options: ClassVar[dict[str, str]]  # the SamplingOptions only this decoder reads -> their flag
    options_that_do_not_apply: ClassVar[dict[str, str]]  # the other decoders' options -> their flag
    exact: ClassVar[bool]  # whether `loglikelihood` is exact (else a Monte Carlo lower bound)
    estimator: ClassVar[str]  # the name `llada eval` reports for `loglikelihood`
    cheap_greedy_check: ClassVar[bool]  # `is_greedy` costs no more than `loglikelihood` (always reported)

    def check(self, options: SamplingOptions) -> None:
        """Raise ConfigError (one line naming the flag and the fix) for options this decoder cannot honour."""
        ...

    def generation_length(self, gen_length: int, max_gen_toks: int | None) -> int:
        """Tokens to generate for an lm-eval request whose gen_kwargs ask for `max_gen_toks` (None: not asked)."""
        ...

    def generate(
        self,
        model: Model,
        prompt: torch.Tensor,
        options: SamplingOptions,
        *,
        eos_id: int | None,
        generator: torch.Generator | None,
        stop_at_eos: bool = True,
        eot_id: int | None = None,
    ) -> torch.Tensor:
        """[1, P + gen_length] token ids after `prompt` [1, P] (the sampler's ValueError for bad options).
        `eos_id`: the run's end-of-text token (None: none known); `stop_at_eos`: the ARM stops generating at it
        (LLaDA's EOS options read it either way); `eot_id`: the chat template's <|eot_id|>, if any."""
        ...

    def likelihood_generator(self, device: torch.device | str, seed: int, *texts: str) -> torch.Generator | None:
        """The generator of `loglikelihood`'s draws for the request `texts` (None: it draws nothing)."""
        ...

    def loglikelihood(
        self,
        model: Model,
        prompt: torch.Tensor,
        answer: torch.Tensor,
        *,
        mc_num: int,
        mc_batch_size: int,
        cfg_scale: float,
        generator: torch.Generator | None,
    ) -> LogLikelihood:
        """log p(answer | prompt) in nats, summed over the answer tokens."""
        ...

    def is_greedy(self, model: Model, prompt: torch.Tensor, answer: torch.Tensor, *, cfg_scale: float) -> bool:
        """Whether greedy decoding from `prompt` reproduces `answer` exactly."""
        ...


@dataclass(frozen=True)
class DiffusionDecoder:
    """LLaDA: reverse diffusion, Monte Carlo likelihood lower bound, `suffix_greedy_prediction`."""

    mask_id: int
    label: ClassVar[str] = "a LLaDA"
    options: ClassVar[dict[str, str]] = DIFFUSION_OPTIONS
    options_that_do_not_apply: ClassVar[dict[str, str]] = AUTOREGRESSIVE_OPTIONS
    exact: ClassVar[bool] = False
    estimator: ClassVar[str] = "monte_carlo_lower_bound"
    cheap_greedy_check: ClassVar[bool] = False

    def check(self, options: SamplingOptions) -> None:
        """LLaDA commits at least one token per step: steps <= gen_length (a multiple of the number of blocks);
        a threshold lies in (0, 1]; the cache is prefix or dual. (The sampler checks the rest.)"""
        threshold, cache = options.threshold, options.cache
        if threshold is not None and not 0 < threshold <= 1:
            raise ConfigError(f"threshold={threshold} is not in (0, 1]; pass --threshold 0.9 (Fast-dLLM's value)")
        if cache is not None and cache not in CACHES:
            raise ConfigError(f"cache={cache!r} is not one of {', '.join(CACHES)}; pass --cache prefix or --cache dual")
        steps, gen_length = options.steps, options.gen_length
        # LLaDA generate.py get_num_transfer_tokens: masked // steps per step, so steps > tokens commits 0 on some
        if steps is None or steps <= gen_length:
            return
        block = self._block_length(options)
        blocks = gen_length // block if gen_length % block == 0 else 1
        multiple = f", a multiple of gen_length/block_length={gen_length}/{block}={blocks}" if blocks > 1 else ""
        raise ConfigError(
            f"steps={steps} is more than gen_length={gen_length} (LLaDA commits at least one token per step); "
            f"pass --steps {gen_length} or fewer{multiple}"
        )

    def generation_length(self, gen_length: int, max_gen_toks: int | None) -> int:
        """The model arg `gen_length` (LLaDA's own harness wrapper also ignores `max_gen_toks`)."""
        return gen_length

    def generate(
        self,
        model: Model,
        prompt: torch.Tensor,
        options: SamplingOptions,
        *,
        eos_id: int | None,
        generator: torch.Generator | None,
        stop_at_eos: bool = True,
        eot_id: int | None = None,
    ) -> torch.Tensor:
        """`sampling.generate` with steps (default gen_length; with a threshold, default None: Fast-dLLM's rule of at
        least one token per step), block_length (default `default_block_length`), threshold and cache;
        `logits_eos_inf` / `confidence_eos_eot_inf` with `eos_id` and `eot_id` (the answer is cut by the caller,
        so `stop_at_eos` changes nothing here)."""
        from llada_lightning.sampling import generate

        gen_length, steps = options.gen_length, options.steps
        if steps is None and options.threshold is None:
            steps = gen_length
        return generate(
            model,
            prompt,
            gen_length=gen_length,
            steps=steps,
            block_length=self._block_length(options),
            temperature=options.temperature,
            cfg_scale=options.cfg_scale,
            remasking=options.remasking,
            mask_id=self.mask_id,
            eos_id=eos_id,
            logits_eos_inf=options.logits_eos_inf,
            confidence_eos_eot_inf=options.confidence_eos_eot_inf,
            eot_id=eot_id,
            threshold=options.threshold,
            cache=options.cache,
            prompt_cache=options.prompt_cache,
            generator=generator,
        )

    def likelihood_generator(self, device: torch.device | str, seed: int, *texts: str) -> torch.Generator | None:
        """Seeded by `seed` and the request text (`request_generator`)."""
        return request_generator(device, seed, *texts)

    def loglikelihood(
        self,
        model: Model,
        prompt: torch.Tensor,
        answer: torch.Tensor,
        *,
        mc_num: int,
        mc_batch_size: int,
        cfg_scale: float,
        generator: torch.Generator | None,
    ) -> LogLikelihood:
        """The Monte Carlo lower bound with `mc_num` draws, `mc_batch_size` per forward pass."""
        from llada_lightning.likelihood import log_likelihood

        return log_likelihood(
            model,
            prompt,
            answer,
            mc_num=mc_num,
            batch_size=min(mc_batch_size, mc_num),
            mask_id=self.mask_id,
            cfg_scale=cfg_scale,
            generator=generator,
        )

    def is_greedy(self, model: Model, prompt: torch.Tensor, answer: torch.Tensor, *, cfg_scale: float) -> bool:
        """All answer tokens masked, one committed per step, most confident first (= `generate(steps =
        block_length = gen_length = L, temperature 0)`), with the guidance of the likelihood."""
        from llada_lightning.sampling import generate

        n = answer.numel()
        out = generate(
            model,
            prompt[None],
            gen_length=n,
            steps=n,
            block_length=n,
            temperature=0.0,
            cfg_scale=cfg_scale,
            mask_id=self.mask_id,
        )
        return bool((out[0, prompt.numel() :] == answer).all())

    @staticmethod
    def _block_length(options: SamplingOptions) -> int:
        return default_block_length(options.gen_length) if options.block_length is None else options.block_length


@dataclass(frozen=True)
class AutoregressiveDecoder:
    """The ARM: left-to-right decoding with a KV cache, exact likelihood, argmax greedy check."""

    label: ClassVar[str] = "an ARM"
    options: ClassVar[dict[str, str]] = AUTOREGRESSIVE_OPTIONS
    options_that_do_not_apply: ClassVar[dict[str, str]] = DIFFUSION_OPTIONS
    exact: ClassVar[bool] = True
    estimator: ClassVar[str] = "exact"
    cheap_greedy_check: ClassVar[bool] = True

    def check(self, options: SamplingOptions) -> None:
        """Every ARM option is checked by `generate_ar` itself."""

    def generation_length(self, gen_length: int, max_gen_toks: int | None) -> int:
        """The request's `max_gen_toks` when it asks, else the model arg `gen_length`."""
        return gen_length if max_gen_toks is None else int(max_gen_toks)

    def generate(
        self,
        model: Model,
        prompt: torch.Tensor,
        options: SamplingOptions,
        *,
        eos_id: int | None,
        generator: torch.Generator | None,
        stop_at_eos: bool = True,
        eot_id: int | None = None,
    ) -> torch.Tensor:
        """`sampling.generate_ar` with `max_new_tokens = gen_length`, top-k and top-p; it stops at `eos_id` when
        `stop_at_eos` (an <|eot_id|> is cut by the caller)."""
        from llada_lightning.sampling import generate_ar

        return generate_ar(
            model,
            prompt,
            max_new_tokens=options.gen_length,
            temperature=options.temperature,
            top_k=options.top_k,
            top_p=options.top_p,
            eos_id=eos_id if stop_at_eos else None,
            generator=generator,
        )

    def likelihood_generator(self, device: torch.device | str, seed: int, *texts: str) -> torch.Generator | None:
        """None: the exact likelihood draws nothing."""
        return None

    def loglikelihood(
        self,
        model: Model,
        prompt: torch.Tensor,
        answer: torch.Tensor,
        *,
        mc_num: int,
        mc_batch_size: int,
        cfg_scale: float,
        generator: torch.Generator | None,
    ) -> LogLikelihood:
        """The exact sum of next-token log-probabilities (the Monte Carlo arguments are not used)."""
        from llada_lightning.likelihood import ar_log_likelihood

        return ar_log_likelihood(model, prompt, answer)

    def is_greedy(self, model: Model, prompt: torch.Tensor, answer: torch.Tensor, *, cfg_scale: float) -> bool:
        """Argmax at every answer position, from one forward pass."""
        import torch

        from llada_lightning.sampling import call_model

        logits = call_model(model, torch.cat((prompt, answer))[None])[0, prompt.numel() - 1 : -1]
        return bool((logits.argmax(dim=-1) == answer).all())


def decoder_for(objective_name: str, mask_id: int) -> Decoder:
    """The decoder of runs trained with objective `objective_name`: the single LLaDA/ARM dispatch of inference."""
    from llada_lightning.objectives.registry import objective_class

    if objective_class(objective_name).causal:
        return AutoregressiveDecoder()
    return DiffusionDecoder(mask_id)
