"""estimator_variance: the loss/gradient variance over masks and times, against exact values computed here.

The exact values use a model whose logits ignore the input (a learnable table theta[T, V]), so the CE of a masked
token i of sequence b is a constant c_bi and, given the effective time s_b = (1 - eps) t_b + eps,
  L = (1/(B T)) sum_b w(s_b) sum_i m_bi c_bi,   m_bi ~ Bernoulli(p(s_b)) independent given s,
hence (law of total variance; h = w p)
  Var L = (1/(B T))^2 [ sum_b (sum_i c_bi^2) E_t[w^2 p (1 - p)] + Var_t(sum_b (sum_i c_bi) h(s_b)) ].
The same holds coordinatewise for the gradient, with c_bi replaced by dCE/dtheta_i = softmax(theta_i) - e_x.
The t-expectations are integrated numerically (float64 midpoint rule) from schedule formulas written out here.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llada_lightning.config.schema import ModelConfig, ObjectiveConfig
from llada_lightning.models import build_model
from llada_lightning.objectives import ARMObjective, LLaDAObjective, sample_times
from llada_lightning.objectives.registry import build_objective
from llada_lightning.objectives.variance import EstimatorVariance, estimator_variance, estimator_variance_of_run

EPS = 0.05  # moderate clamp: the 1/s weight's fourth moment stays small, so the se of the variance is reliable
B, T, V = 8, 6, 5
MASK_ID = V
GRID = 200_000  # midpoint-rule points on [0, 1) (a multiple of B: no point on an antithetic wrap)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors run fastest (and steadiest on a shared machine) on one torch thread, the module-scoped
    `loss_only` included; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TableLogits(nn.Module):
    """logits[b, i] = table[i] (+ bias): ignores its input; records whether it ran in training mode."""

    def __init__(self, table: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone())
        self.bias = None if bias is None else nn.Parameter(bias.clone())
        self.modes: list[bool] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        logits = self.table[: ids.shape[1]]
        if self.bias is not None:
            logits = logits + self.bias
        return logits.unsqueeze(0).expand(ids.shape[0], -1, -1)


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    table = 1.5 * torch.randn(T, V, generator=g)
    x0 = torch.randint(0, V, (B, T), generator=g)
    return table, x0


def objective(schedule: str = "linear", **overrides) -> LLaDAObjective:
    cfg = ObjectiveConfig(name="llada", schedule=schedule, eps=EPS, random_length_prob=0.0)
    return LLaDAObjective(replace(cfg, **overrides), mask_id=MASK_ID)


# --- exact values, independent of the code under test ----------------------------------------------


def hand_schedule(schedule: str, weighting: str, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask probability p(s), weight w(s)): MDLM's schedules, written out by hand."""
    if schedule == "linear":
        p, w = s, 1.0 / s
    else:  # cosine: alpha = cos(pi s / 2), w = -alpha' / (1 - alpha)
        p = 1.0 - np.cos(np.pi * s / 2)
        w = (np.pi / 2) * np.sin(np.pi * s / 2) / p
    return p, (np.ones_like(s) if weighting == "unweighted" else w)


def per_token(table: torch.Tensor, x0: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(c[B, T] = CE of each token, a[B, T, V] = dCE/dlogits = softmax - onehot), in float64."""
    logp = torch.log_softmax(table.double(), dim=-1)  # [T, V]
    c = -logp.gather(1, x0.T).T  # c[b, i] = -log softmax(table[i])[x0[b, i]]
    a = logp.exp().unsqueeze(0) - F.one_hot(x0, V).double()
    return c.numpy(), a.numpy()


def exact_var(k: np.ndarray, schedule: str, weighting: str, sampling: str) -> tuple[np.ndarray, np.ndarray]:
    """(E Z_j, Var Z_j) for Z_j = (1/(B T)) sum_b w(s_b) sum_i m_bi k[b, i, j], law of total variance.

    k[B, T, J]: J independent "coordinates" (J = 1 for the loss, T*V for the gradient).
    """
    batch, length = k.shape[:2]
    t = (np.arange(GRID) + 0.5) / GRID  # midpoint rule on [0, 1)
    s1, s2 = k.sum(axis=1), (k**2).sum(axis=1)  # [B, J]

    def at(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, w = hand_schedule(schedule, weighting, (1 - EPS) * times + EPS)
        return w * p, w * w * p * (1 - p)  # E[w m | t] and Var[w m | t] per token

    h, bern = at(t)
    mean = s1.sum(axis=0) * h.mean()
    within = s2.sum(axis=0) * bern.mean()  # E_t of the Bernoulli variance (every t_b is marginally uniform)
    if sampling == "iid":
        between = (s1**2).sum(axis=0) * h.var()  # independent times
    else:  # t_b = (u + b/B) mod 1, u uniform: integrate over u
        hb = np.stack([at(np.remainder(t + b / batch, 1.0))[0] for b in range(batch)], axis=1)  # [GRID, B]
        between = (hb @ s1).var(axis=0)
    scale = 1.0 / (batch * length)
    return scale * mean, scale**2 * (within + between)


def exact_loss(table, x0, schedule="linear", weighting="elbo", sampling="iid") -> tuple[float, float]:
    c, _ = per_token(table, x0)
    mean, var = exact_var(c[:, :, None], schedule, weighting, sampling)
    return float(mean[0]), float(var[0])


def exact_grad_var(table, x0, schedule="linear", weighting="elbo", sampling="iid") -> float:
    """Trace of the gradient covariance: coordinate (i, v) only gets terms from position i."""
    _, a = per_token(table, x0)
    k = np.zeros((B, T, T * V))
    for i in range(T):
        k[:, i, i * V : (i + 1) * V] = a[:, i, :]
    return float(exact_var(k, schedule, weighting, sampling)[1].sum())


# --- 1. the loss variance against its exact value -------------------------------------------------


VARIANTS = [
    ("linear", "elbo", "iid"),
    ("linear", "elbo", "antithetic"),
    ("linear", "unweighted", "iid"),
    ("linear", "unweighted", "antithetic"),
    ("cosine", "elbo", "iid"),
    ("cosine", "elbo", "antithetic"),
]


@pytest.fixture(scope="module")
def loss_only() -> dict[tuple[str, str, str], EstimatorVariance]:
    table, x0 = data()
    model = TableLogits(table)
    return {
        (sch, wt, smp): estimator_variance(
            model, objective(sch, weighting=wt, time_sampling=smp), x0, draws=4000, seed=1, gradient=False
        )
        for sch, wt, smp in VARIANTS
    }


@pytest.mark.parametrize("variant", VARIANTS, ids="-".join)
def test_loss_mean_and_variance_match_the_exact_values(variant, loss_only):
    table, x0 = data()
    mean, var = exact_loss(table, x0, *variant)
    est = loss_only[variant]
    assert est.draws == 4000 and est.n_batches == 1 and est.grad_var is None and est.grad_norm_sq_mean is None
    assert est.loss_var_se < 0.1 * var  # the test has power: a 40% error in the variance could not pass
    assert abs(est.loss_var - var) < 4 * est.loss_var_se
    assert abs(est.loss_mean - mean) < 4 * math.sqrt(var / est.draws)


def test_linear_elbo_variance_has_its_closed_form():
    # Linear + ELBO: E[L | t] is constant, Var L = (1/(BT))^2 sum c^2 (E[1/s] - 1), E[1/s] = ln(1/eps)/(1 - eps).
    table, x0 = data()
    c, _ = per_token(table, x0)
    closed = (c**2).sum() * (math.log(1 / EPS) / (1 - EPS) - 1) / (B * T) ** 2
    assert exact_loss(table, x0)[1] == pytest.approx(closed, rel=1e-6)


# --- 2. the comparisons that provably hold on this model -------------------------------------------


def separated(low: EstimatorVariance, high: EstimatorVariance) -> bool:
    return high.loss_var - low.loss_var > 4 * math.hypot(low.loss_var_se, high.loss_var_se)


@pytest.mark.parametrize("schedule,weighting", [("linear", "unweighted"), ("cosine", "elbo")])
def test_antithetic_times_lower_the_variance_when_the_mean_given_t_varies(schedule, weighting, loss_only):
    # E[L | t] = (1/(BT)) sum_b C_b h(s_b) varies with t here; antithetic times shrink the variance of that
    # term (the Bernoulli term is the same: each t_b is still uniform), so the total variance drops.
    table, x0 = data()
    assert exact_loss(table, x0, schedule, weighting, "antithetic")[1] < exact_loss(table, x0, schedule, weighting)[1]
    assert separated(loss_only[(schedule, weighting, "antithetic")], loss_only[(schedule, weighting, "iid")])


def test_antithetic_times_cannot_help_linear_elbo_on_this_model(loss_only):
    # Linear + ELBO: E[L | t] = (1/(BT)) sum c is constant in t, so the time coupling changes nothing.
    table, x0 = data()
    assert exact_loss(table, x0, "linear", "elbo", "antithetic")[1] == pytest.approx(
        exact_loss(table, x0, "linear", "elbo", "iid")[1], rel=1e-6
    )
    iid, anti = loss_only[("linear", "elbo", "iid")], loss_only[("linear", "elbo", "antithetic")]
    assert abs(iid.loss_var - anti.loss_var) < 4 * math.hypot(iid.loss_var_se, anti.loss_var_se)


def test_unweighted_has_lower_loss_variance_than_elbo_for_the_linear_schedule(loss_only):
    # w = 1 removes the 1/s blow-up (the raw loss variance; its mean is also smaller, about half).
    table, x0 = data()
    assert exact_loss(table, x0, "linear", "unweighted")[1] < 0.6 * exact_loss(table, x0, "linear", "elbo")[1]
    assert separated(loss_only[("linear", "unweighted", "iid")], loss_only[("linear", "elbo", "iid")])


# --- 3. the gradient variance ------------------------------------------------------------------------


def naive(model: nn.Module, obj: LLaDAObjective, batches: list[torch.Tensor], draws: int, seed: int):
    """Every draw's loss and gradient stored, in the documented draw order (batches, then draws)."""
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    losses, grads = [], []
    for x0 in batches:
        lb, gb = [], []
        for _ in range(draws):
            t = sample_times(
                x0.shape[0], generator=gen, antithetic=obj.cfg.time_sampling == "antithetic", device=x0.device
            )
            loss = obj.loss_at_times(model, x0, t, gen)["loss"]
            gb.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).double())
            lb.append(loss.item())
        losses.append(torch.tensor(lb, dtype=torch.float64))
        grads.append(torch.stack(gb))
    return losses, grads


@pytest.mark.parametrize("variant", [("linear", "elbo", "iid"), ("cosine", "elbo", "antithetic")], ids="-".join)
def test_gradient_variance_matches_the_exact_trace(variant):
    table, x0 = data()
    draws = 3000
    obj = objective(variant[0], weighting=variant[1], time_sampling=variant[2])
    est = estimator_variance(TableLogits(table), obj, x0, draws=draws, seed=5)
    _, (grads,) = naive(TableLogits(table), obj, [x0], draws, seed=5)
    # The se of the trace estimate: sum_j s_j^2 = mean_d ||g_d - mean g||^2 * D/(D-1), a mean of D draws.
    dev = (grads - grads.mean(dim=0)).square().sum(dim=1)
    se = float(dev.std()) / math.sqrt(draws)
    exact = exact_grad_var(table, x0, *variant)
    assert se < 0.1 * exact
    assert abs(est.grad_var - exact) < 4 * se
    # E g = (1/(BT)) sum_b E[h(s)] a_b; E||mean g||^2 = ||E g||^2 + tr Cov / D, with standard deviation about
    # 2 sqrt(mu^T Cov mu / D) (delta method), mu^T Cov mu estimated from the stored draws.
    _, a = per_token(table, x0)
    p, w = hand_schedule(variant[0], variant[1], (1 - EPS) * (np.arange(GRID) + 0.5) / GRID + EPS)
    mu = torch.from_numpy(a.sum(axis=0).reshape(-1) * (w * p).mean() / (B * T))
    sd = 2 * math.sqrt(float((grads @ mu).var()) / draws)
    assert abs(est.grad_norm_sq_mean - float(mu @ mu) - exact / draws) < 4 * sd
    assert sd < 0.05 * float(mu @ mu)


def test_statistics_equal_a_naive_loop_that_stores_every_draw():
    torch.manual_seed(0)
    cfg = ModelConfig(n_layers=1, n_heads=2, n_kv_heads=2, d_model=16, d_ff=32, vocab_size=V, max_seq_len=T)
    model = build_model(cfg)
    g = torch.Generator().manual_seed(9)
    batches = [torch.randint(0, V, (4, T), generator=g) for _ in range(2)]
    obj = objective("cosine", time_sampling="antithetic")
    est = estimator_variance(model, obj, batches, draws=12, seed=7)
    losses, grads = naive(model, obj, batches, 12, seed=7)
    assert est.n_batches == 2 and est.draws == 12
    assert est.loss_mean == pytest.approx(float(torch.stack(losses).mean()), rel=1e-12)
    assert est.loss_var == pytest.approx(float(torch.stack([x.var() for x in losses]).mean()), rel=1e-9)
    grad_var = torch.stack([gr.var(dim=0).sum() for gr in grads]).mean()
    assert est.grad_var == pytest.approx(float(grad_var), rel=1e-9)
    norm_sq = torch.stack([gr.mean(dim=0).square().sum() for gr in grads]).mean()
    assert est.grad_norm_sq_mean == pytest.approx(float(norm_sq), rel=1e-9)
    assert est.grad_relative_noise == pytest.approx(float(grad_var / norm_sq), rel=1e-9)
    # the plug-in se of the sample variance, from the fourth central moment
    n = 12
    ses = []
    for x in losses:
        m4, s2 = float((x - x.mean()).pow(4).mean()), float(x.var())
        ses.append((m4 - (n - 3) / (n - 1) * s2**2) / n)
    assert est.loss_var_se == pytest.approx(math.sqrt(sum(ses)) / 2, rel=1e-9)


# --- 4. reproducible, and the model untouched ---------------------------------------------------------


def test_same_seed_same_result_other_seed_other_result():
    table, x0 = data()
    model, obj = TableLogits(table), objective("cosine")
    first = estimator_variance(model, obj, [x0, x0.flip(0)], draws=50, seed=11)
    assert estimator_variance(model, obj, [x0, x0.flip(0)], draws=50, seed=11) == first
    other = estimator_variance(model, obj, [x0, x0.flip(0)], draws=50, seed=12)
    assert other.loss_var != first.loss_var and other.grad_var != first.grad_var


def test_weights_grads_requires_grad_and_mode_are_left_as_they_were():
    table, x0 = data()
    model = TableLogits(table, bias=torch.randn(V, generator=torch.Generator().manual_seed(2)))
    model.bias.requires_grad_(False)  # a frozen parameter: not differentiated, and left frozen
    model.table.grad = torch.full_like(model.table, 3.0)  # a pending gradient must survive
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    est = estimator_variance(model, objective(), x0, draws=20, seed=4)
    assert model.modes and not any(model.modes)  # every forward ran in eval mode
    assert model.training  # restored
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(model.table.grad, torch.full_like(model.table, 3.0)) and model.bias.grad is None
    assert model.table.requires_grad and not model.bias.requires_grad
    # The frozen bias only shifts every row's logits, so the table's gradient is that of table + bias alone.
    same = estimator_variance(TableLogits(table + model.bias.detach()), objective(), x0, draws=20, seed=4)
    assert est.grad_var == pytest.approx(same.grad_var, rel=1e-6)
    assert est.grad_norm_sq_mean == pytest.approx(same.grad_norm_sq_mean, rel=1e-6)


def test_the_random_length_coin_is_skipped_at_full_length_and_kept_otherwise():
    table, x0 = data()
    model = TableLogits(table)
    always = objective(random_length_prob=1.0)
    full = estimator_variance(model, always, x0, draws=3000, seed=6, gradient=False)
    assert full == estimator_variance(model, objective(), x0, draws=3000, seed=6, gradient=False)
    # full_length=False: each draw's length is uniform in [1, T]; Var = E_len Var(L | len) + Var_len E[L | len].
    rand = estimator_variance(model, always, x0, draws=3000, seed=6, gradient=False, full_length=False)
    given = [exact_loss(table[:n], x0[:, :n]) for n in range(1, T + 1)]
    mean = np.mean([m for m, _ in given])
    var = np.mean([v for _, v in given]) + np.var([m for m, _ in given])
    assert abs(rand.loss_var - var) < 4 * rand.loss_var_se and rand.loss_var_se < 0.1 * var
    assert abs(rand.loss_mean - mean) < 4 * math.sqrt(var / 3000)
    assert separated(full, rand)


# --- 5. the autoregressive baseline has no randomness --------------------------------------------------


def test_arm_objective_has_zero_variance_and_its_exact_loss_and_gradient():
    table, x0 = data()
    model = TableLogits(table)
    est = estimator_variance(model, ARMObjective(), [x0, x0.flip(1)], draws=10, seed=0)
    assert (est.loss_var, est.loss_var_se, est.grad_var) == (0.0, 0.0, 0.0)
    assert est.draws == 10 and est.n_batches == 2 and est.grad_relative_noise == 0.0
    losses, norms = [], []
    for x in (x0, x0.flip(1)):
        loss = F.cross_entropy(model.table[:-1].expand(B, -1, -1).reshape(-1, V), x[:, 1:].reshape(-1))
        (grad,) = torch.autograd.grad(loss, [model.table])
        losses.append(loss.item())
        norms.append(grad.double().square().sum().item())
    assert est.loss_mean == pytest.approx(np.mean(losses), rel=1e-6)
    assert est.grad_norm_sq_mean == pytest.approx(np.mean(norms), rel=1e-6)
    assert estimator_variance(model, ARMObjective(), [x0, x0.flip(1)], draws=10, seed=1) == est


def test_invalid_arguments_are_refused():
    table, x0 = data()
    model = TableLogits(table)
    with pytest.raises(ValueError, match="draws"):
        estimator_variance(model, objective(), x0, draws=1, seed=0)
    with pytest.raises(ValueError, match="at least one batch"):
        estimator_variance(model, objective(), [], draws=5, seed=0)
    with pytest.raises(ValueError, match="requires_grad"):
        estimator_variance(model.requires_grad_(False), objective(), x0, draws=5, seed=0)


# --- a trained run ------------------------------------------------------------------------------------


@pytest.mark.slow  # trains a 2-step run (~15 s on 2 shared cores)
def test_of_run_loads_the_checkpoint_and_applies_the_objective_overrides(tmp_path: Path):
    from llada_lightning.cli import main
    from llada_lightning.inference.loading import load_run

    run_dir = tmp_path / "run"
    tiny = ["model=cpu-0.1m", "data.seq_len=16", "train.batch_size=2", "train.max_steps=2"]
    assert main(["train", *tiny, "train.progress_bar=false", "objective=llada", f"run_dir={run_dir}"]) == 0
    x0 = torch.randint(0, 100, (4, 16), generator=torch.Generator().manual_seed(0))
    overrides = {"time_sampling": "antithetic", "random_length_prob": 0.5}
    est = estimator_variance_of_run(run_dir, x0, draws=6, seed=3, objective_overrides=overrides, full_length=False)
    loaded = load_run(run_dir)
    obj = build_objective(replace(loaded.cfg.objective, **overrides), loaded.mask_id)
    assert obj.cfg.time_sampling == "antithetic" and loaded.cfg.objective.time_sampling == "iid"
    loaded.model.requires_grad_(True)
    assert est == estimator_variance(loaded.model, obj, [x0], draws=6, seed=3, full_length=False)
    assert est.grad_var > 0 and est.loss_var > 0
    with pytest.raises(ValueError, match="objective.name"):
        estimator_variance_of_run(run_dir, x0, draws=6, seed=3, objective_overrides={"name": "arm"})
