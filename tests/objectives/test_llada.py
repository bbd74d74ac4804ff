"""The LLaDA objective: hand-computed losses, mask statistics, time sampling, random length, validation."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from llada_lightning.config.schema import ObjectiveConfig
from llada_lightning.objectives import (
    LLaDAObjective,
    Objective,
    build_objective,
    effective_time,
    forward_process,
    get_schedule,
    masked_diffusion_loss,
    sample_times,
)

EPS = 1e-3
V = 3
MASK_ID = V  # outside the vocabulary, as in SMDM
LOGITS = [
    [[1.0, 2.0, 0.5], [0.1, -1.0, 2.0], [0.0, 0.0, 0.0], [3.0, 1.0, -2.0]],
    [[-0.5, 0.3, 1.2], [2.2, -0.7, 0.4], [1.5, 1.5, -1.0], [0.2, 0.9, -0.3]],
]
X0 = [[1, 2, 0, 0], [2, 0, 1, 1]]
MASK = [[1, 0, 1, 1], [0, 1, 1, 0]]
TIMES = [0.3, 0.7]


def hand_ce(row: list[float], target: int) -> float:
    return math.log(sum(math.exp(v) for v in row)) - row[target]


def hand_weight(key: str, s: float) -> float:
    """-alpha'(s) / (1 - alpha(s)) written out by hand (MDLM, Sahoo et al. 2024)."""
    if key == "linear":
        return 1 / s
    if key == "cosine":
        x = math.pi * s / 2
        return (math.pi / 2) * math.sin(x) / (1 - math.cos(x))
    k = {"polynomial2": 2.0, "polynomial3": 3.0}[key]
    return k * s ** (k - 1) / s**k


def hand_loss(key: str | None, mask: list[list[int]], length: int = 4) -> float:
    """(1/(B*L)) sum_b sum_i mask * CE * w_b, w_b at s_b = (1 - eps) t_b + eps; key None: w = 1."""
    total = 0.0
    for b in range(2):
        s = (1 - EPS) * TIMES[b] + EPS
        w = 1.0 if key is None else hand_weight(key, s)
        for i in range(length):
            if mask[b][i]:
                total += hand_ce(LOGITS[b][i], X0[b][i]) * w
    return total / (2 * length)


SCHEDULE_ARGS = {
    "linear": ("linear", 2.0),
    "cosine": ("cosine", 2.0),
    "polynomial2": ("polynomial", 2.0),
    "polynomial3": ("polynomial", 3.0),
}


def objective_for(key: str = "linear", **overrides) -> LLaDAObjective:
    name, power = SCHEDULE_ARGS[key]
    cfg = ObjectiveConfig(name="llada", schedule=name, schedule_power=power, eps=EPS)
    return LLaDAObjective(replace(cfg, **overrides), mask_id=MASK_ID)


class FixedLogits:
    """A fake model: a fixed logit table (truncated to the input length), recording its inputs."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits
        self.inputs: list[torch.Tensor] = []

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        self.inputs.append(ids.clone())
        return self.logits[: ids.shape[0], : ids.shape[1]]


class TinyLM(nn.Module):
    def __init__(self, vocab: int, dim: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab + 1, dim)  # + the mask row
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the loss against hand computation -------------------------------------------------------------


@pytest.mark.parametrize("key", list(SCHEDULE_ARGS))
def test_masked_diffusion_loss_matches_hand_computation(key):
    schedule = get_schedule(*SCHEDULE_ARGS[key])
    s = effective_time(torch.tensor(TIMES, dtype=torch.float64), EPS)
    loss = masked_diffusion_loss(
        torch.tensor(LOGITS, dtype=torch.float64),
        torch.tensor(X0),
        torch.tensor(MASK, dtype=torch.bool),
        schedule.weight(s),
    )
    assert loss.item() == pytest.approx(hand_loss(key, MASK), abs=1e-6)


@pytest.mark.parametrize("key", list(SCHEDULE_ARGS))
def test_objective_loss_at_fixed_times_matches_hand_computation(key):
    # End to end: the mask is drawn by the objective, observed through the model's input.
    model = FixedLogits(torch.tensor(LOGITS, dtype=torch.float64))
    out = objective_for(key).loss_at_times(model, torch.tensor(X0), torch.tensor(TIMES, dtype=torch.float64), gen(3))
    (seen,) = model.inputs
    mask = (seen == MASK_ID).int().tolist()
    assert torch.equal(seen[seen != MASK_ID], torch.tensor(X0)[seen != MASK_ID])
    assert out["loss"].item() == pytest.approx(hand_loss(key, mask), abs=1e-6)
    assert out["mask_rate"].item() == pytest.approx(sum(map(sum, mask)) / 8)
    assert out["seq_len"] == 4


def test_normaliser_is_all_tokens_not_masked_ones():
    # One masked token of CE c in a 2x4 batch with weight 1: loss c / 8 (not c / 1).
    mask = [[0, 0, 0, 0], [0, 0, 1, 0]]
    loss = masked_diffusion_loss(
        torch.tensor(LOGITS, dtype=torch.float64),
        torch.tensor(X0),
        torch.tensor(mask, dtype=torch.bool),
        torch.ones(2, dtype=torch.float64),
    )
    assert loss.item() == pytest.approx(hand_ce(LOGITS[1][2], X0[1][2]) / 8, abs=1e-12)


def test_bf16_logits_give_a_float32_loss():
    logits = torch.tensor(LOGITS).to(torch.bfloat16)
    mask = torch.tensor(MASK, dtype=torch.bool)
    weight = torch.tensor([2.0, 3.0])
    loss = masked_diffusion_loss(logits, torch.tensor(X0), mask, weight)
    assert loss.dtype == torch.float32
    assert loss.item() == masked_diffusion_loss(logits.float(), torch.tensor(X0), mask, weight).item()


def test_unweighted_uses_weight_one_and_is_not_an_nll_bound():
    objective = objective_for("cosine", weighting="unweighted")
    assert objective.is_nll_bound is False
    assert objective_for("cosine").is_nll_bound is True
    assert torch.equal(objective.loss_weight(torch.tensor([0.01, 0.5])), torch.ones(2))
    model = FixedLogits(torch.tensor(LOGITS, dtype=torch.float64))
    out = objective.loss_at_times(model, torch.tensor(X0), torch.tensor(TIMES, dtype=torch.float64), gen(5))
    mask = (model.inputs[0] == MASK_ID).int().tolist()
    assert out["loss"].item() == pytest.approx(hand_loss(None, mask), abs=1e-6)


# --- forward process ------------------------------------------------------------------------------


def test_forward_process_replaces_exactly_the_masked_tokens():
    x0 = torch.randint(0, V, (4, 16), generator=gen(1))
    t = torch.tensor([0.0, 0.2, 0.6, 0.99])
    xt, masked, p = forward_process(x0, t, schedule=get_schedule("linear"), eps=EPS, mask_id=MASK_ID, generator=gen(2))
    assert masked.dtype == torch.bool and masked.shape == x0.shape
    assert torch.equal(xt[masked], torch.full_like(xt[masked], MASK_ID))
    assert torch.equal(xt[~masked], x0[~masked])
    assert torch.equal(p, (1 - EPS) * t + EPS)  # linear: p is the clamped time, bit for bit


@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
def test_empirical_mask_rate_matches_schedule(schedule_name):
    # 200k Bernoulli(p) tokens per t: the rate has standard error sqrt(p (1 - p) / n); allow 5 of them.
    schedule = get_schedule(schedule_name)
    x0 = torch.zeros(200, 1000, dtype=torch.long)
    n = x0.numel()
    g = gen(7)
    for t in [0.0, 0.05, 0.3, 0.5, 0.8, 0.999]:
        s = (1 - EPS) * t + EPS
        p = s if schedule_name == "linear" else 1 - math.cos(math.pi * s / 2)
        _, masked, _ = forward_process(
            x0, torch.full((200,), t), schedule=schedule, eps=EPS, mask_id=MASK_ID, generator=g
        )
        rate = masked.float().mean().item()
        se = math.sqrt(p * (1 - p) / n) if 0 < p < 1 else 1e-12
        assert abs(rate - p) <= 5 * se, (t, rate, p, se)


# --- time sampling --------------------------------------------------------------------------------


def test_iid_times_are_uniform_in_unit_interval_and_reproducible():
    t = sample_times(20000, generator=gen(0), antithetic=False)
    assert t.shape == (20000,) and t.min() >= 0 and t.max() < 1
    assert abs(t.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / 20000)
    assert torch.equal(t, sample_times(20000, generator=gen(0), antithetic=False))


def test_antithetic_times_are_stratified_with_lower_variance_of_the_batch_mean():
    batch, n_batches = 8, 2000
    g_anti, g_iid = gen(11), gen(12)
    anti = torch.stack([sample_times(batch, generator=g_anti, antithetic=True) for _ in range(n_batches)])
    iid = torch.stack([sample_times(batch, generator=g_iid, antithetic=False) for _ in range(n_batches)])
    assert anti.min() >= 0 and anti.max() < 1
    # one time per stratum [i/B, (i+1)/B)
    strata = torch.floor(anti.sort(dim=1).values * batch).long()
    assert torch.equal(strata, torch.arange(batch).expand(n_batches, batch))
    # batch mean = (B-1)/(2B) + U/B for U ~ U[0,1): mean 1/2, variance 1/(12 B^2); iid: 1/(12 B)
    var_anti_theory = 1 / (12 * batch**2)
    mean_anti = anti.mean(dim=1)
    assert abs(mean_anti.mean().item() - 0.5) < 5 * math.sqrt(var_anti_theory / n_batches)
    var_anti, var_iid = mean_anti.var().item(), iid.mean(dim=1).var().item()
    # sample variance has relative standard error sqrt(2/(n-1)) ~ 3.2%: 15% is about 5 of them
    assert var_iid == pytest.approx(1 / (12 * batch), rel=0.15)
    assert var_anti == pytest.approx(var_anti_theory, rel=0.15)
    assert var_anti < var_iid / 4


# --- random length --------------------------------------------------------------------------------


def test_random_length_always_with_probability_one():
    objective = objective_for(random_length_prob=1.0)
    g, seq_len, n = gen(0), 8, 4000
    lengths = [objective.sample_length(seq_len, g) for _ in range(n)]
    counts = [lengths.count(length) for length in range(1, seq_len + 1)]
    assert sum(counts) == n  # all in [1, T]
    # uniform on [1, T]: each count ~ Binomial(n, 1/T), standard error sqrt(n (1/T)(1 - 1/T))
    se = math.sqrt(n * (1 / seq_len) * (1 - 1 / seq_len))
    assert all(abs(c - n / seq_len) < 5 * se for c in counts), counts


def test_random_length_never_with_probability_zero():
    objective = objective_for(random_length_prob=0.0)
    g = gen(0)
    assert all(objective.sample_length(8, g) == 8 for _ in range(2000))
    model = TinyLM(V)
    x0 = torch.randint(0, V, (2, 8), generator=gen(1))
    assert all(objective.training_loss(model, x0, g)["seq_len"] == 8 for _ in range(20))


def test_random_length_frequency_matches_probability():
    # P(length < T) = prob * (T - 1)/T; binomial standard error sqrt(q (1 - q) / n); allow 5 of them.
    prob, seq_len, n = 0.01, 64, 40000
    objective = objective_for(random_length_prob=prob)
    g = gen(21)
    shorter = sum(objective.sample_length(seq_len, g) < seq_len for _ in range(n))
    q = prob * (seq_len - 1) / seq_len
    assert abs(shorter / n - q) < 5 * math.sqrt(q * (1 - q) / n)


def test_training_loss_truncates_and_normalises_by_used_length():
    # Unweighted, so the loss does not depend on the (unobserved) times: sum masked CE / (B * L).
    objective = objective_for(random_length_prob=1.0, weighting="unweighted")
    model = FixedLogits(torch.tensor(LOGITS, dtype=torch.float64))
    g, used = gen(4), set()
    for _ in range(30):
        out = objective.training_loss(model, torch.tensor(X0), g)
        seen = model.inputs[-1]
        length = out["seq_len"]
        used.add(length)
        assert 1 <= length <= 4 and seen.shape == (2, length)
        mask = (seen == MASK_ID).int().tolist()
        expected = sum(hand_ce(LOGITS[b][i], X0[b][i]) for b in range(2) for i in range(length) if mask[b][i]) / (
            2 * length
        )
        assert out["loss"].item() == pytest.approx(expected, abs=1e-9)
    assert len(used) > 1


# --- RNG discipline and gradients -----------------------------------------------------------------


def test_training_is_reproducible_resumable_and_leaves_the_global_rng_alone():
    objective = objective_for("cosine", time_sampling="antithetic", random_length_prob=0.5)
    model = TinyLM(V)
    x0 = torch.randint(0, V, (4, 16), generator=gen(1))
    global_state = torch.get_rng_state()
    g1, g2 = gen(9), gen(9)
    for _ in range(3):
        a, b = objective.training_loss(model, x0, g1), objective.training_loss(model, x0, g2)
        assert torch.equal(a["loss"], b["loss"]) and a["seq_len"] == b["seq_len"]
    resumed = torch.Generator()
    resumed.set_state(g1.get_state())  # what a checkpoint restores
    a, b = objective.training_loss(model, x0, g1), objective.training_loss(model, x0, resumed)
    assert torch.equal(a["loss"], b["loss"])
    objective.validation_nll(model, x0, gen(0))
    assert torch.equal(torch.get_rng_state(), global_state)


def test_loss_is_differentiable():
    model = TinyLM(V)
    x0 = torch.randint(0, V, (4, 16), generator=gen(1))
    out = objective_for().training_loss(model, x0, gen(0))
    assert out["loss"].ndim == 0 and out["mask_rate"].dtype == torch.float32
    out["loss"].backward()
    grad = model.head.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


# --- validation -----------------------------------------------------------------------------------


def test_validation_is_reproducible_and_seed_dependent():
    objective = objective_for("cosine", val_mask_draws=4)
    model = TinyLM(V)
    x0 = torch.randint(0, V, (4, 16), generator=gen(1))
    a, count = objective.validation_nll(model, x0, gen(0))
    b, _ = objective.validation_nll(model, x0, gen(0))
    c, _ = objective.validation_nll(model, x0, gen(1))
    assert count == 4 * 16
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_validation_uses_elbo_weight_full_length_and_stratified_times():
    cfg = dict(val_mask_draws=4, random_length_prob=1.0)
    elbo, unweighted = objective_for("cosine", **cfg), objective_for("cosine", weighting="unweighted", **cfg)
    model = FixedLogits(torch.tensor(LOGITS, dtype=torch.float64))
    a, _ = elbo.validation_nll(model, torch.tensor(X0), gen(3))
    b, _ = unweighted.validation_nll(model, torch.tensor(X0), gen(3))
    assert torch.equal(a, b)
    assert all(seen.shape == (2, 4) for seen in model.inputs)

    # Stratified times t_k = (u_b + k/K) mod 1, observed through the mask rate of long sequences under the
    # linear schedule (p = s): sorted, each sequence's K rates are spaced exactly (1 - eps)/K apart, up to
    # binomial noise; each rate has standard error <= sqrt(0.25 / n), a difference sqrt(2) times that.
    n, draws = 20000, 4
    model = FixedLogits(torch.zeros(3, n, V))
    objective = objective_for("linear", val_mask_draws=draws)
    objective.validation_nll(model, torch.zeros(3, n, dtype=torch.long), gen(0))
    rates = torch.stack([(seen == MASK_ID).float().mean(dim=1) for seen in model.inputs], dim=1)  # [B, K]
    spacings = rates.sort(dim=1).values.diff(dim=1)
    tolerance = 5 * math.sqrt(2 * 0.25 / n)
    assert ((spacings - (1 - EPS) / draws).abs() < tolerance).all(), spacings


@pytest.mark.parametrize("key", ["linear", "cosine"])
def test_validation_mean_approaches_expected_elbo(key):
    # For a model that ignores its input, E[w(s) 1[masked] CE] = CE * E_t[-alpha'(s)] and
    # E_t[-alpha'((1-eps)t + eps)] = (alpha(eps) - alpha(1)) / (1 - eps), so the expected total is
    # (sum of all CEs) * (alpha(eps) - alpha(1)) / (1 - eps). Check the mean within 5 standard errors.
    alpha = {"linear": lambda t: 1 - t, "cosine": lambda t: math.cos(math.pi * t / 2)}[key]
    factor = (alpha(EPS) - alpha(1.0)) / (1 - EPS)
    ce_sum = sum(hand_ce(LOGITS[b][i], X0[b][i]) for b in range(2) for i in range(4))
    objective = objective_for(key, val_mask_draws=4)
    tiles, repeats = 64, 50  # the 2-sequence example tiled 64 times, validated 50 times
    model = FixedLogits(torch.tensor(LOGITS, dtype=torch.float64).repeat(tiles, 1, 1))
    x0, g = torch.tensor(X0).repeat(tiles, 1), gen(17)
    values = torch.tensor([objective.validation_nll(model, x0, g)[0].item() / tiles for _ in range(repeats)])
    se = values.std().item() / math.sqrt(repeats)
    assert abs(values.mean().item() - ce_sum * factor) < 5 * se, (values.mean().item(), ce_sum * factor, se)


# --- building from config -------------------------------------------------------------------------


def test_build_objective_llada():
    objective = build_objective(ObjectiveConfig(schedule="polynomial", schedule_power=3.0), mask_id=MASK_ID)
    assert isinstance(objective, LLaDAObjective) and isinstance(objective, Objective)
    assert objective.name == "llada" and objective.is_nll_bound
    assert objective.schedule.power == 3.0 and objective.mask_id == MASK_ID


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("name", "gpt"),
        ("schedule", "foo"),
        ("time_sampling", "sobol"),
        ("weighting", "maskgit"),
        ("eps", 0.0),
        ("eps", 1.0),
        ("random_length_prob", -0.1),
        ("random_length_prob", 1.5),
        ("val_mask_draws", 0),
        ("schedule_power", -1.0),
    ],
)
def test_build_objective_rejects_invalid_fields_naming_the_key(key, value):
    with pytest.raises(ValueError, match=rf"^objective\.{key}=") as info:
        build_objective(replace(ObjectiveConfig(), **{key: value}), mask_id=MASK_ID)
    assert "\n" not in str(info.value)


def test_schedule_error_lists_valid_names():
    with pytest.raises(ValueError, match="objective.schedule='foo' is not one of linear, cosine, polynomial"):
        build_objective(ObjectiveConfig(schedule="foo"), mask_id=MASK_ID)
