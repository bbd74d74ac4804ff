"""The run's decoder: picked once from the objective registry, and the options each decoder owns."""

from __future__ import annotations

import pytest

from llada_lightning.config.errors import ConfigError
from llada_lightning.inference.decoders import (
    AutoregressiveDecoder,
    DiffusionDecoder,
    SamplingOptions,
    decoder_for,
    request_generator,
)
from llada_lightning.objectives import registry
from llada_lightning.objectives.arm import ARMObjective


def test_decoder_follows_the_objectives_attention():
    assert decoder_for("llada", 7) == DiffusionDecoder(7)
    assert decoder_for("arm", 7) == AutoregressiveDecoder()


def test_a_new_causal_objective_decodes_autoregressively(monkeypatch):
    """The registry's `causal`, not the objective's name, decides (a new causal objective needs no inference edit)."""

    class NextTokenVariant(ARMObjective):
        name = "arm-variant"

    monkeypatch.setitem(registry.OBJECTIVES, "arm-variant", NextTokenVariant)
    assert decoder_for("arm-variant", 7) == AutoregressiveDecoder()


def test_unknown_objective_is_a_config_error():
    with pytest.raises(ConfigError, match="objective.name='nope' is not one of llada, arm"):
        decoder_for("nope", 7)


def test_each_decoder_refuses_exactly_the_others_options():
    diffusion, autoregressive = DiffusionDecoder(7), AutoregressiveDecoder()
    assert diffusion.options_that_do_not_apply == autoregressive.options
    assert autoregressive.options_that_do_not_apply == diffusion.options
    assert set(diffusion.options) | set(autoregressive.options) <= set(SamplingOptions.__dataclass_fields__)


def test_diffusion_steps_must_not_exceed_gen_length():
    decoder = DiffusionDecoder(7)
    decoder.check(SamplingOptions(gen_length=16, steps=16, block_length=8))
    decoder.check(SamplingOptions(gen_length=16))  # steps default to gen_length
    with pytest.raises(ConfigError, match=r"^steps=17 is more than gen_length=16 .*--steps 16 or fewer$"):
        decoder.check(SamplingOptions(gen_length=16, steps=17))
    with pytest.raises(ConfigError, match=r"a multiple of gen_length/block_length=64/32=2$"):
        decoder.check(SamplingOptions(gen_length=64, steps=128))  # the default block of 64 tokens is 32
    AutoregressiveDecoder().check(SamplingOptions(gen_length=4, steps=100))  # the ARM ignores steps


def test_diffusion_threshold_and_cache_are_checked():
    decoder = DiffusionDecoder(7)
    decoder.check(SamplingOptions(gen_length=16, threshold=0.9, cache="dual"))
    decoder.check(SamplingOptions(gen_length=16, threshold=1.0, cache="prefix"))
    for threshold in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match=rf"^threshold={threshold} is not in \(0, 1\]; pass --threshold 0.9"):
            decoder.check(SamplingOptions(gen_length=16, threshold=threshold))
    with pytest.raises(ConfigError, match=r"^cache='full' is not one of prefix, dual; pass --cache prefix"):
        decoder.check(SamplingOptions(gen_length=16, cache="full"))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (dict(), dict(steps=16, threshold=None, cache=None, prompt_cache=False)),
        (dict(threshold=0.9), dict(steps=None, threshold=0.9, cache=None)),  # Fast-dLLM's rule: steps as needed
        (dict(threshold=0.9, steps=8, cache="dual"), dict(steps=8, threshold=0.9, cache="dual")),
        (dict(prompt_cache=True), dict(steps=16, cache=None, prompt_cache=True)),
    ],
)
def test_diffusion_decoder_passes_threshold_and_cache(monkeypatch, options, expected):
    seen = {}
    monkeypatch.setattr("llada_lightning.sampling.generate", lambda model, prompt, **kwargs: seen.update(kwargs))
    DiffusionDecoder(7).generate(None, None, SamplingOptions(gen_length=16, **options), eos_id=None, generator=None)
    assert {key: seen[key] for key in expected} == expected


def test_only_the_diffusion_likelihood_draws_from_a_request_generator():
    gen = DiffusionDecoder(7).likelihood_generator("cpu", 3, "context", "choice")
    assert gen is not None and gen.initial_seed() == request_generator("cpu", 3, "context", "choice").initial_seed()
    assert gen.initial_seed() != request_generator("cpu", 3, "context", "other").initial_seed()
    assert AutoregressiveDecoder().likelihood_generator("cpu", 3, "context", "choice") is None


def test_generation_length_reads_max_gen_toks_only_for_the_arm():
    assert DiffusionDecoder(7).generation_length(64, 8) == 64
    assert AutoregressiveDecoder().generation_length(64, 8) == 8
    assert AutoregressiveDecoder().generation_length(64, None) == 64
