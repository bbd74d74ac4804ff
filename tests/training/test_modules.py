"""The LightningModules differ only in the objective and the attention mask, however their config was built."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from llada_lightning.config import ModelConfig, ObjectiveConfig, RunConfig
from llada_lightning.training.modules import ARMModule, LLaDAModule

MODEL = ModelConfig(n_layers=1, n_heads=2, n_kv_heads=2, d_model=16, d_ff=32, vocab_size=40, max_seq_len=16)


def run_config(objective: str, causal: bool = False) -> RunConfig:
    cfg = RunConfig(objective=ObjectiveConfig(name=objective), model=dataclasses.replace(MODEL, causal=causal))
    cfg.train.max_steps = 10
    return cfg


def sees_the_future(module) -> bool:
    x = torch.randint(0, MODEL.vocab_size, (1, 8), generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % MODEL.vocab_size
    with torch.no_grad():
        return not torch.allclose(module(x)[0, 0], module(y)[0, 0])


def test_arm_module_is_causal_even_from_a_hand_built_config() -> None:
    cfg = run_config("arm", causal=False)  # not through compose(): nothing has set causal yet
    module = ARMModule(cfg)
    assert module.model.config.causal and module.cfg.model.causal
    assert module.hparams["cfg"]["model"]["causal"] is True  # the checkpoint records the model that trained
    assert not sees_the_future(module)
    assert cfg.model.causal is False  # the caller's config is not mutated


def test_llada_module_is_bidirectional_and_refuses_a_causal_backbone() -> None:
    assert sees_the_future(LLaDAModule(run_config("llada")))
    with pytest.raises(ValueError, match="model.causal=False"):
        LLaDAModule(run_config("llada", causal=True))


class _Strategy:
    def __init__(self, others_bad: bool) -> None:
        self.others_bad = others_bad

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:  # noqa: A002 - Lightning's name
        assert all is False  # "any rank", not "every rank"
        return decision or self.others_bad


class _Trainer:
    def __init__(self, world_size: int, others_bad: bool) -> None:
        self.world_size, self.strategy = world_size, _Strategy(others_bad)


@pytest.mark.parametrize(("world_size", "mine", "others_bad", "stop"), [
    (1, 1.0, True, False),  # one process: only its own loss counts
    (1, float("nan"), False, True),
    (2, 1.0, True, True),  # another rank diverged: this one stops too instead of hanging in the next all-reduce
    (2, float("inf"), False, True),
    (2, 1.0, False, False),
])  # fmt: skip
def test_loss_guard_stops_every_rank_together(world_size, mine, others_bad, stop) -> None:
    module = ARMModule(run_config("arm"))
    module._trainer = _Trainer(world_size, others_bad)
    assert module._any_rank_non_finite(torch.tensor(mine)) is stop
