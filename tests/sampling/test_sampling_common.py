"""`call_model`: any callable `(input_ids, attention_mask)` returning logits, whatever its signature."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TINY, tiny_model

from llada_lightning.likelihood import log_likelihood
from llada_lightning.sampling import call_model, generate, generate_ar
from llada_lightning.sampling.common import mask_passing

MASK = TINY.mask_id
KW = {"gen_length": 4, "steps": 4, "block_length": 2, "mask_id": MASK}


def left_padded() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, TINY.vocab_size, (2, 6), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, :2] = 0
    return ids, mask


def test_signatures_are_read_once_per_kind() -> None:
    assert mask_passing(tiny_model()) == ("keyword", False)  # forward(input_ids, attention_mask=None, ...)
    assert mask_passing(lambda ids: ids) == ("none", False)
    assert mask_passing(lambda ids, attention_mask: ids) == ("keyword", True)
    assert mask_passing(lambda ids, pad_mask: ids) == ("positional", True)
    assert mask_passing(lambda ids, pad_mask=None: ids) == ("positional", False)
    assert mask_passing(lambda ids, **kwargs: ids) == ("keyword", False)


def test_a_callable_that_requires_the_mask_gets_it_even_when_none() -> None:
    model = tiny_model()
    seen: list[torch.Tensor | None] = []

    def required(input_ids, attention_mask):  # no default: the issue's `(input_ids, attention_mask)` callable
        seen.append(attention_mask)
        return model(input_ids, attention_mask=attention_mask)

    ids, mask = left_padded()
    assert torch.equal(generate(required, ids, **KW), generate(model, ids, **KW))
    assert seen and all(m is None for m in seen)
    seen.clear()
    assert torch.equal(generate(required, ids, mask, **KW), generate(model, ids, mask, **KW))
    assert seen and all(m is not None and m.shape[1] == ids.shape[1] + KW["gen_length"] for m in seen)
    prompt, answer = ids[0], torch.tensor([3, 4, 5])
    gen = torch.Generator().manual_seed(0)
    expected = log_likelihood(model, prompt, answer, mask_id=MASK, mc_num=8, generator=gen)
    gen = torch.Generator().manual_seed(0)
    assert log_likelihood(required, prompt, answer, mask_id=MASK, mc_num=8, generator=gen) == expected


def test_a_positional_mask_parameter_of_another_name_gets_the_mask() -> None:
    model = tiny_model(causal=True)
    seen: list[torch.Tensor | None] = []

    def positional(input_ids, pad_mask=None):
        seen.append(pad_mask)
        return model(input_ids, attention_mask=pad_mask)

    ids, mask = left_padded()
    out = generate_ar(positional, ids, mask, max_new_tokens=3, temperature=0.0, use_cache=False)
    assert torch.equal(out, generate_ar(model, ids, mask, max_new_tokens=3, temperature=0.0, use_cache=False))
    assert seen and all(m is not None for m in seen)


def test_a_mask_for_a_callable_without_one_is_a_clear_error() -> None:
    ids, mask = left_padded()
    with pytest.raises(TypeError, match="takes no attention mask"):
        call_model(lambda input_ids: torch.zeros(*input_ids.shape, 5), ids, mask)
