"""The autoregressive objective against hand-computed cross-entropies."""

from __future__ import annotations

import math

import pytest
import torch

from llada_lightning.config.schema import ObjectiveConfig
from llada_lightning.objectives import ARMObjective, build_objective, next_token_loss

LOGITS = [
    [[1.0, 2.0, 0.5], [0.1, -1.0, 2.0], [0.0, 0.0, 0.0], [3.0, 1.0, -2.0]],
    [[-0.5, 0.3, 1.2], [2.2, -0.7, 0.4], [1.5, 1.5, -1.0], [0.2, 0.9, -0.3]],
]
X = [[1, 2, 0, 0], [2, 0, 1, 1]]


def hand_ce(row: list[float], target: int) -> float:
    return math.log(sum(math.exp(v) for v in row)) - row[target]


def hand_next_token_nll_sum() -> float:
    # position i predicts token i + 1
    return sum(hand_ce(LOGITS[b][i], X[b][i + 1]) for b in range(2) for i in range(3))


class FixedLogits:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits[:, : ids.shape[1]]


def test_next_token_loss_matches_hand_computation():
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    loss = next_token_loss(logits, torch.tensor(X))
    assert loss.item() == pytest.approx(hand_next_token_nll_sum() / 6, abs=1e-9)


def test_validation_nll_is_the_exact_sum_over_predicted_positions():
    objective = ARMObjective()
    model = FixedLogits(torch.tensor(LOGITS, dtype=torch.float64))
    total, count = objective.validation_nll(model, torch.tensor(X), torch.Generator().manual_seed(0))
    assert count == 2 * 3
    assert total.item() == pytest.approx(hand_next_token_nll_sum(), abs=1e-9)


def test_training_loss_keys_and_values():
    objective = ARMObjective()
    model = FixedLogits(torch.tensor(LOGITS, dtype=torch.float32, requires_grad=True))
    out = objective.training_loss(model, torch.tensor(X), torch.Generator().manual_seed(0))
    assert out["seq_len"] == 4
    assert out["loss"].item() == pytest.approx(hand_next_token_nll_sum() / 6, rel=1e-6)
    out["loss"].backward()
    assert model.logits.grad is not None and model.logits.grad[:, -1].abs().sum() == 0  # last logit unused


def test_bf16_logits_give_a_float32_loss():
    logits = torch.tensor(LOGITS).to(torch.bfloat16)
    loss = next_token_loss(logits, torch.tensor(X))
    assert loss.dtype == torch.float32
    expected = next_token_loss(logits.float(), torch.tensor(X))
    assert loss.item() == expected.item()


def test_build_objective_arm():
    objective = build_objective(ObjectiveConfig(name="arm"), mask_id=3)
    assert isinstance(objective, ARMObjective)
    assert objective.name == "arm" and objective.is_nll_bound is True
