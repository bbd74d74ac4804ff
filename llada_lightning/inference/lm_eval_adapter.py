"""An lm-evaluation-harness model for trained runs, registered as `llada_lightning` (LLaDA wraps its model the
same way: an `LM` subclass with `loglikelihood` and `generate_until`; LLaDA eval_llada.py).

Needs the optional extra (`pip install 'llada-lightning[eval]'`); nothing else in the package imports this module.
Importing it registers the model, so in Python:

    import lm_eval
    import llada_lightning.inference.lm_eval_adapter  # noqa: F401  (registers "llada_lightning")
    lm_eval.simple_evaluate(model="llada_lightning", model_args="run_dir=runs/x,mc_num=64", tasks=[...])

On the command line use `python -m llada_lightning.inference.lm_eval_cli` with lm_eval's arguments (`lm_eval_cli.py`:
the harness has no plugin entry points, so a plain `lm_eval --model llada_lightning` cannot find this model).

What each request type computes (the run's decoder, chosen from its objective, decides):
- `loglikelihood(context, continuation)` -> (log p, is_greedy). LLaDA: the Monte Carlo lower bound (`mc_num`
  draws, seeded by `seed` and the request text, so a request always gets the same value); is_greedy: LLaDA's
  `suffix_greedy_prediction` check (all answer tokens masked, greedy decoding one token per step reproduces the
  continuation; set `check_greedy=False` to skip it and report False). ARM: exact, is_greedy = argmax everywhere.
- `loglikelihood_rolling(text)`: log p(text) over disjoint windows of `max_length` tokens (default: the run's
  training `data.seq_len`), the first conditioned on the end-of-text token. LLaDA: the sum of the windows' ELBO
  estimates (a lower bound); ARM: exact.
- `generate_until(context, gen_kwargs)`: LLaDA `generate` with the model args `gen_length`, `steps`,
  `block_length`, `remasking`, `cfg_scale`, and Fast-dLLM's `threshold` (e.g. 0.9; `steps` may then be omitted)
  and `cache` (`prefix`, the same as `prompt_cache=true`, or `dual`) (LLaDA's own harness wrapper also ignores
  `max_gen_toks`); ARM
  `generate_ar` with `max_gen_toks` (default `gen_length`), `top_k`, `top_p`. `temperature` / `do_sample` from
  gen_kwargs override the model arg. The context is left-truncated to `max_length` tokens and so that it and the
  generated tokens fit in `model.max_seq_len`. The text is cut at the end-of-text token and at the first `until`
  string.

Requests are processed one at a time (`batch_size` is accepted for the harness's sake and not used).
"""

from __future__ import annotations

import logging
from typing import Any

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "llada_lightning.inference.lm_eval_adapter needs lm-evaluation-harness: pip install 'llada-lightning[eval]' "
        "(or pip install 'lm-eval>=0.4')"
    ) from exc

from llada_lightning.config.errors import ConfigError
from llada_lightning.inference.decoders import SamplingOptions
from llada_lightning.inference.generation import generate_ids
from llada_lightning.inference.loading import load_run
from llada_lightning.inference.scoring import (
    continuation_loglik,
    encode_pair,
    fit_context,
    is_greedy,
    request_generator,
    rolling_loglik,
)

MODEL_NAME = "llada_lightning"


def _opt(value: Any, kind: type) -> Any:
    """A model arg from lm-eval's `key=value` string (None / "none" / "" stay None)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if kind is bool and isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return kind(value)


def available_device(device: str | None) -> str:
    """`device` (default cpu), or cpu when it names a CUDA device this machine lacks: lm-eval's command line
    passes `cuda:0` unless told `--device`, and its own HFLM falls back to the CPU the same way."""
    import torch

    if device is None:
        return "cpu"
    wanted = torch.device(device)
    if wanted.type == "cuda" and (not torch.cuda.is_available() or (wanted.index or 0) >= torch.cuda.device_count()):
        logging.getLogger(__name__).warning("device %s is not available: using cpu", device)
        return "cpu"
    return device


@register_model(MODEL_NAME)
class LLaDALightningLM(LM):
    """lm-eval `LM` over a run directory written by `llada train` (LLaDA or ARM, chosen by the run)."""

    def __init__(
        self,
        run_dir: str,
        device: str | None = "cpu",
        mc_num: int = 128,
        mc_batch_size: int = 32,
        cfg_scale: float = 0.0,
        check_greedy: bool = True,
        max_length: int | None = None,
        gen_length: int = 64,
        steps: int | None = None,
        block_length: int | None = None,
        remasking: str = "low_confidence",
        prompt_cache: bool = False,
        threshold: float | None = None,
        cache: str | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        batch_size: Any = None,
        max_batch_size: Any = None,
    ) -> None:
        super().__init__()
        self.run = load_run(run_dir, device=available_device(_opt(device, str)))
        self._device = self.run.device
        self.mc_num = _opt(mc_num, int)
        self.mc_batch_size = _opt(mc_batch_size, int)
        self.cfg_scale = _opt(cfg_scale, float)
        self.check_greedy = _opt(check_greedy, bool)
        self.max_length = _opt(max_length, int) or self.run.max_length
        if self.max_length > self.run.max_seq_len:
            raise ConfigError(
                f"max_length={self.max_length} exceeds the model's context (model.max_seq_len="
                f"{self.run.max_seq_len}); pass max_length={self.run.max_seq_len} or less"
            )
        self.gen_length = _opt(gen_length, int)
        self.steps = _opt(steps, int)
        self.block_length = _opt(block_length, int)
        self.remasking = str(remasking)
        self.prompt_cache = _opt(prompt_cache, bool)
        self.threshold = _opt(threshold, float)
        self.cache = _opt(cache, str)
        self.temperature = _opt(temperature, float)
        self.top_k = _opt(top_k, int)
        self.top_p = _opt(top_p, float)
        self.seed = _opt(seed, int)
        # the generation model args fail here, not at the first generate_until request
        self.run.decoder.check(
            SamplingOptions(self.gen_length, self.steps, self.block_length, threshold=self.threshold, cache=self.cache)
        )

    @property
    def tokenizer_name(self) -> str:
        return str(self.run.tokenizer_path)

    # -- scoring ---------------------------------------------------------------------------------------------
    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        out = []
        for req in requests:
            context, continuation = req.args[0], req.args[1]
            prompt, answer = encode_pair(self.run, context, continuation)
            prompt = fit_context(prompt, answer, self.max_length)
            gen = self.run.decoder.likelihood_generator(self.run.device, self.seed, context, continuation)
            ll = continuation_loglik(
                self.run,
                prompt,
                answer,
                mc_num=self.mc_num,
                mc_batch_size=self.mc_batch_size,
                cfg_scale=self.cfg_scale,
                generator=gen,
            ).mean
            greedy = (
                is_greedy(self.run, prompt, answer, cfg_scale=self.cfg_scale)
                if self.check_greedy or self.run.decoder.cheap_greedy_check
                else False
            )
            out.append((ll, greedy))
            self.cache_hook.add_partial("loglikelihood", (context, continuation), (ll, greedy))
        return out

    def loglikelihood_rolling(self, requests: list[Any]) -> list[float]:
        out = []
        for req in requests:
            (text,) = req.args[:1]
            ll = rolling_loglik(
                self.run,
                text,
                max_length=self.max_length,
                mc_num=self.mc_num,
                mc_batch_size=self.mc_batch_size,
                seed=self.seed,
            )
            out.append(ll)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), ll)
        return out

    # -- generation ------------------------------------------------------------------------------------------
    def generate_until(self, requests: list[Any]) -> list[str]:
        out = []
        for req in requests:
            context, gen_kwargs = req.args[0], dict(req.args[1] or {})
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            temperature = float(gen_kwargs.get("temperature", self.temperature))
            if gen_kwargs.get("do_sample") is False:
                temperature = 0.0
            length = self.run.decoder.generation_length(self.gen_length, gen_kwargs.get("max_gen_toks"))
            prompt = fit_generation_context(self.run.encode(context), self.max_length, self.run.max_seq_len - length)
            ids = generate_ids(
                self.run,
                prompt,
                gen_length=length,
                steps=self.steps,
                block_length=self.block_length,
                temperature=temperature,
                cfg_scale=self.cfg_scale,
                remasking=self.remasking,
                prompt_cache=self.prompt_cache,
                threshold=self.threshold,
                cache=self.cache,
                top_k=gen_kwargs.get("top_k", self.top_k),  # read by the ARM decoder only
                top_p=gen_kwargs.get("top_p", self.top_p),
                seed=request_generator(self.run, self.seed, context).initial_seed(),
                stop_at_eos=True,
            )
            text = truncate_at(self.run.decode(ids), until)
            out.append(text)
            self.cache_hook.add_partial("generate_until", (context, req.args[1]), text)
        return out


def fit_generation_context(prompt: list[int], max_length: int, room: int) -> list[int]:
    """The last `max_length` prompt tokens, fewer when only `room` positions are left before `model.max_seq_len`
    (as lm-eval's HFLM keeps max_length - max_gen_toks); with no room left at all generate_ids reports it."""
    keep = min(max_length, room)
    return prompt[-keep:] if keep > 0 else prompt


def truncate_at(text: str, until: list[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any non-empty string of `until`."""
    cut = min((text.find(s) for s in until if s and s in text), default=len(text))
    return text[:cut]
