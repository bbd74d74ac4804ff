"""The data-constrained law of Muennighoff et al. 2023 (arXiv 2305.16264, App. A): formulas, two-stage fit,
bootstrap, critical compute (Prabhudesai et al. 2025) and the half-life of repeated data.

True parameters are written here by hand; reference values come from the law written out independently below
(from the datablations README, "Parametric Fit") or from numbers Muennighoff et al. published."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy.optimize import brentq, minimize_scalar
from scipy.special import huber as scipy_huber

from llada_lightning.scaling import (
    DataConstrainedFit,
    bootstrap_data_constrained,
    critical_compute,
    data_half_life,
    fit_data_constrained,
    fit_parametric,
    parametric_objective,
)
from llada_lightning.scaling import data_constrained as dc
from llada_lightning.scaling.repeated_data import optimal_loss

# Synthetic truth (chosen here): R_D* = 15, R_N* = 5 as in Muennighoff et al.'s C4 fit, a Chinchilla-like law.
E, A, B, ALPHA, BETA, RD_STAR, RN_STAR = 1.8, 400.0, 1200.0, 0.34, 0.28, 15.0, 5.0
STAGE1 = {"E": E, "A": A, "B": B, "alpha": ALPHA, "beta": BETA}
TRUE = DataConstrainedFit(E=E, A=A, B=B, alpha=ALPHA, beta=BETA, R_D_star=RD_STAR, R_N_star=RN_STAR)

# Muennighoff et al.'s C4 fit as published in the datablations README (a, b, e = log A, log B, log E).
C4_A, C4_B, C4_E, C4_ALPHA, C4_BETA, C4_RD, C4_RN = (
    6.255414,
    7.3049974,
    0.6254804,
    0.3526596,
    0.3526596,
    15.387756,
    5.309743,
)
C4 = DataConstrainedFit(
    E=math.exp(C4_E), A=math.exp(C4_A), B=math.exp(C4_B), alpha=C4_ALPHA, beta=C4_BETA, R_D_star=C4_RD, R_N_star=C4_RN
)

# 9 stage-1 starts keep the tests fast (the full 4500-start grid is fit_parametric's default, tested there).
FEW_STARTS = np.array(list(itertools.product([0, 5, 10], [0, 5, 10], [0.0], [0.5], [0.5])))


def reference_loss(n, d, u, e, a, b, alpha, beta, rd_star, rn_star):
    """The law as the datablations README writes it (E, A, B in the law's units), with U = min(U, D) as its
    `optimal_allocation` does; rd_star / rn_star = inf give the R* -> inf limit."""
    n, d, u = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (n, d, u)))
    u = np.minimum(u, d)
    g = ((alpha * a) / (beta * b)) ** (1 / (alpha + beta))
    rd = np.maximum(d / u - 1, 0)
    un = np.minimum(n, (u * g) ** (beta / alpha) * g)
    rn = np.maximum(n / un - 1, 0)
    n_eff = n if math.isinf(rn_star) else un + un * rn_star * (1 - np.exp(-rn / rn_star))
    d_eff = d if math.isinf(rd_star) else u + u * rd_star * (1 - np.exp(-rd / rd_star))
    return e + a / n_eff**alpha + b / d_eff**beta


def g_true() -> float:
    return (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))


def n_for_tokens(d):
    """Compute-optimal N whose compute-optimal D is d, from the closed form of the README."""
    g = g_true()
    return (np.asarray(d, dtype=float) * g) ** (BETA / ALPHA) * g


def design():
    """25 single-epoch points (N <= U_N, so both laws agree there) and 60 multi-epoch points: U in {3e7, 3e8},
    2..60 epochs, sizes from 0.3 to 30 x U_N (R_N up to 29)."""
    n, d, u = [], [], []
    for dd in np.geomspace(1e8, 1e11, 5):
        for k in (1 / 100, 1 / 30, 1 / 10, 1 / 3, 1):
            n.append(n_for_tokens(dd) * k), d.append(dd), u.append(dd)
    for uu in (3e7, 3e8):
        for epochs in (2, 4, 8, 16, 32, 60):
            for k in (0.3, 1, 3, 10, 30):
                n.append(n_for_tokens(uu) * k), d.append(uu * epochs), u.append(uu)
    return np.array(n), np.array(d), np.array(u)


def true_loss(n, d, u):
    return reference_loss(n, d, u, E, A, B, ALPHA, BETA, RD_STAR, RN_STAR)


# ---------------------------------------------------------------------------------------------------------------
# 1. formulas


def test_law_matches_the_reference_formula(rng):
    n = 10 ** rng.uniform(5, 9, 200)
    u = 10 ** rng.uniform(7, 10, 200)
    d = u * 10 ** rng.uniform(-1, 2, 200)  # D from U/10 (single epoch) to 100 epochs
    np.testing.assert_allclose(TRUE.predict(n, d, u), true_loss(n, d, u), rtol=1e-12)


def test_effective_data_is_d_for_single_epoch_and_saturates_at_u_times_one_plus_rd_star():
    u = 1e9
    d = np.array([1e7, 5e8, 1e9])  # D <= U: one epoch at most
    n_eff, d_eff = TRUE.effective(1e6, d, u)
    np.testing.assert_allclose(d_eff, d, rtol=1e-14)
    _, d_far = TRUE.effective(1e6, u * 1e6, u)  # a million epochs
    assert float(d_far) == pytest.approx(u * (1 + RD_STAR), rel=1e-9)
    _, d_40 = TRUE.effective(1e6, u * 40, u)
    assert float(d_40) < u * (1 + RD_STAR)


@pytest.mark.parametrize("r_star", [math.inf, 1e300])
def test_infinite_r_star_is_the_chinchilla_law(rng, r_star):
    n = 10 ** rng.uniform(5, 10, 100)
    u = 10 ** rng.uniform(7, 10, 100)
    d = u * 10 ** rng.uniform(-1, 2, 100)
    law = DataConstrainedFit(E=E, A=A, B=B, alpha=ALPHA, beta=BETA, R_D_star=r_star, R_N_star=r_star)
    pred = law.predict(n, d, u)
    assert np.isfinite(pred).all()
    np.testing.assert_allclose(pred, E + A / n**ALPHA + B / d**BETA, rtol=1e-12)


def test_single_epoch_points_without_excess_params_need_no_r_star():
    n = n_for_tokens(1e9) * np.array([0.01, 0.5, 1.0])  # N <= U_N, D = U: R_N = R_D = 0
    pred = TRUE.predict(n, 1e9, 1e9)
    np.testing.assert_allclose(pred, E + A / n**ALPHA + B / 1e9**BETA, rtol=1e-13)


def test_unique_params_is_the_chinchilla_optimal_n_whose_optimal_d_is_u():
    # independent: minimise the Chinchilla law numerically at each C, then solve D_opt(C) = U for C
    def chinchilla_opt(c):
        res = minimize_scalar(
            lambda x: E + A * math.exp(-ALPHA * x) + B * (c / (6 * math.exp(x))) ** -BETA,
            bounds=(0.0, 60.0),
            method="bounded",
            options={"xatol": 1e-12},
        )
        n = math.exp(res.x)
        return n, c / (6 * n)

    for u in (1e8, 3e10):
        log_c = brentq(lambda x, u=u: math.log(chinchilla_opt(math.exp(x))[1] / u), math.log(1e10), math.log(1e30))
        n_opt, d_opt = chinchilla_opt(math.exp(log_c))
        assert d_opt == pytest.approx(u, rel=1e-6)
        assert float(TRUE.unique_params(u)) == pytest.approx(n_opt, rel=1e-5)
        # the README's form (U G)^(beta/alpha) G is the same number
        assert float(TRUE.unique_params(u)) == pytest.approx(float(n_for_tokens(u)), rel=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# 2-4. fitting


def test_noisy_points_recovered_within_bootstrap_intervals():
    n, d, u = design()
    rng = np.random.default_rng(7)
    loss = true_loss(n, d, u) * np.exp(rng.normal(0.0, 0.003, len(n)))  # 0.3% multiplicative noise
    fit = fit_data_constrained(n, d, u, loss, stage1_starts=FEW_STARTS)
    assert fit.n_points == 85 and fit.n_single_epoch == 25 and fit.warnings == ()
    assert fit.alpha == pytest.approx(ALPHA, rel=0.03)
    assert fit.beta == pytest.approx(BETA, rel=0.03)
    assert pytest.approx(E, rel=0.05) == fit.E
    assert fit.R_D_star == pytest.approx(RD_STAR, rel=0.1)
    assert fit.R_N_star == pytest.approx(RN_STAR, rel=0.15)
    # stage 2 minimised: no worse than the true R* with the fitted stage 1 (Huber written out with scipy)
    at_true_r = DataConstrainedFit(**{k: getattr(fit, k) for k in STAGE1}, R_D_star=RD_STAR, R_N_star=RN_STAR)
    resid = np.log(at_true_r.predict(n, d, u)) - np.log(loss)
    assert 0 < fit.objective <= scipy_huber(1e-3, resid).sum()

    bs = bootstrap_data_constrained(n, d, u, loss, n_resamples=80, seed=0, stage1_starts=FEW_STARTS, full=fit)
    assert bs.scheme == "pairs within strata" and bs.n_resamples == 80
    for name, truth in [("E", E), ("alpha", ALPHA), ("beta", BETA), ("R_D_star", RD_STAR), ("R_N_star", RN_STAR)]:
        rec = bs.record(name)
        assert rec["reliable"], (name, rec["problem"])
        assert rec["estimate"] == pytest.approx(fit.params()[name], rel=1e-6)
        assert rec["low"] <= truth <= rec["high"], (name, rec["low"], rec["high"])


def test_bootstrap_given_the_full_fit_equals_the_one_that_refits_it():
    n, d, u = design()
    loss = true_loss(n, d, u) * np.exp(np.random.default_rng(3).normal(0.0, 0.003, len(n)))
    fit = fit_data_constrained(n, d, u, loss, stage1_starts=FEW_STARTS)
    own = bootstrap_data_constrained(n, d, u, loss, n_resamples=8, seed=1, stage1_starts=FEW_STARTS)
    given = bootstrap_data_constrained(n, d, u, loss, n_resamples=8, seed=1, stage1_starts=FEW_STARTS, full=fit)
    for name in ("E", "alpha", "beta", "R_D_star", "R_N_star"):
        np.testing.assert_array_equal(own.samples[name], given.samples[name])


def test_fixed_stage1_recovers_r_stars_from_noiseless_data():
    n, d, u = design()
    fit = fit_data_constrained(n, d, u, true_loss(n, d, u), fixed=STAGE1)
    assert fit.fixed == ("E", "A", "B", "alpha", "beta") and math.isnan(fit.stage1_objective)
    assert (fit.E, fit.A, fit.B, fit.alpha, fit.beta) == (E, A, B, ALPHA, BETA)
    assert fit.R_D_star == pytest.approx(RD_STAR, rel=0.01)
    assert fit.R_N_star == pytest.approx(RN_STAR, rel=0.01)
    assert fit.objective < 1e-12


def test_fixed_stage1_needs_no_single_epoch_points():
    n, d, u = design()
    multi = d > u
    fit = fit_data_constrained(n[multi], d[multi], u[multi], true_loss(n, d, u)[multi], fixed=STAGE1)
    assert fit.n_single_epoch == 0
    assert fit.R_D_star == pytest.approx(RD_STAR, rel=0.01)


def test_partial_fixed_holds_the_subset_and_fits_the_rest(rng):
    n, d, u = design()
    loss = true_loss(n, d, u) * np.exp(rng.normal(0.0, 0.003, len(n)))
    fit = fit_data_constrained(n, d, u, loss, fixed={"alpha": ALPHA, "beta": BETA}, stage1_starts=FEW_STARTS)
    assert fit.fixed == ("alpha", "beta")
    assert (fit.alpha, fit.beta) == (ALPHA, BETA)
    single = d <= u
    truth = np.array([math.log(A), math.log(B), math.log(E), ALPHA, BETA])
    at_truth, _ = parametric_objective(truth, np.log(n[single]), np.log(d[single]), np.log(loss[single]))
    assert fit.stage1_objective <= at_truth  # the held fit is at least as good as the truth on its own points
    assert pytest.approx(E, rel=0.05) == fit.E


def test_all_single_epoch_reduces_to_the_single_epoch_law(rng):
    nn = np.repeat(np.geomspace(1e6, 1e9, 6), 5)  # includes N far above U_N(D)
    dd = np.tile(np.geomspace(1e8, 1e11, 5), 6)
    uu = dd * np.tile([1.0, 2.0, 10.0, 1.0, 3.0], 6)  # U >= D: every point sees each token at most once
    loss = (E + A / nn**ALPHA + B / dd**BETA) * np.exp(rng.normal(0.0, 0.003, len(nn)))
    fit = fit_data_constrained(nn, dd, uu, loss, stage1_starts=FEW_STARTS)
    ref = fit_parametric(nn, dd, loss, starts=FEW_STARTS)
    assert fit.n_single_epoch == fit.n_points == 30
    for name, value in ref.params().items():
        assert getattr(fit, name) == pytest.approx(value, rel=1e-12), name
    assert fit.R_D_star == math.inf and fit.R_N_star == math.inf
    assert any("no point repeats data" in w for w in fit.warnings)
    qn, qd = np.geomspace(1e5, 1e11, 7), np.geomspace(1e7, 1e13, 7)
    np.testing.assert_allclose(fit.predict(qn, qd, 1e8), ref.predict(qn, qd), rtol=1e-12)  # repeats or not
    out = fit.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["R_D_star"] is None and out["warnings"] == list(fit.warnings)


def test_without_excess_params_r_n_star_is_unidentified():
    n, d, u = design()
    keep = n <= TRUE.unique_params(np.minimum(u, d)) * (1 - 1e-9)  # N < U_N everywhere: R_N = 0
    assert (d[keep] > u[keep]).any()
    fit = fit_data_constrained(n[keep], d[keep], u[keep], true_loss(n, d, u)[keep], fixed=STAGE1)
    assert fit.R_N_star == math.inf and any("R_N* is not identified" in w for w in fit.warnings)
    assert fit.R_D_star == pytest.approx(RD_STAR, rel=0.01)


def test_stage2_gradient_matches_central_differences():
    n, d, u = design()
    loss = true_loss(n, d, u) * np.exp(np.linspace(-0.01, 0.01, len(n)))  # residuals across delta = 1e-3
    theta = TRUE.theta
    log_ud, r_d, log_un, r_n = dc._repetition(n, d, u, *theta[[0, 1]], ALPHA, BETA)
    args = (theta, log_un, r_n, log_ud, r_d, np.log(n), np.log(loss), True, 1e-3)
    p = np.array([math.log(9.0), math.log(3.0)])
    _, grad = dc._stage2_objective(p, *args)
    h = 1e-6
    numeric = [(dc._stage2_objective(p + h * e, *args)[0] - dc._stage2_objective(p - h * e, *args)[0]) / (2 * h)
               for e in np.eye(2)]  # fmt: skip
    np.testing.assert_allclose(grad, numeric, rtol=1e-5)


def test_starts_accept_pairs_and_values():
    n, d, u = design()
    loss = true_loss(n, d, u)
    by_pairs = fit_data_constrained(n, d, u, loss, fixed=STAGE1, starts=[(10.0, 2.0), (30.0, 8.0)])
    by_values = fit_data_constrained(n, d, u, loss, fixed=STAGE1, starts=[2.0, 30.0])
    assert by_pairs.n_starts == 2 and by_values.n_starts == 4
    for fit in (by_pairs, by_values):
        assert fit.R_D_star == pytest.approx(RD_STAR, rel=0.01)


# ---------------------------------------------------------------------------------------------------------------
# 5. the published C4 fit


def test_published_c4_fit_reproduces_the_readme_predictions():
    # datablations README: the Figure 1 (right) models and their printed losses
    assert float(C4.predict(6.34e9, 242e9, 25e9)) == pytest.approx(2.2256440889984477, rel=1e-12)
    assert float(C4.predict(8.67e9, 178e9, 25e9)) == pytest.approx(2.2269634075087867, rel=1e-12)


def test_published_c4_fit_up_to_four_epochs_is_almost_unique_data():
    u = 25e9
    n = float(C4.unique_params(u))
    _, d4 = C4.effective(n, 4 * u, u)
    assert 0.9 < float(d4) / (4 * u) < 1.0  # D' within 10% of D at 4 epochs
    fresh = float(C4.predict(n, 4 * u, 4 * u))  # the same run on 4U unique tokens
    assert float(C4.predict(n, 4 * u, u)) / fresh - 1 < 0.005  # loss within 0.5%: "negligible" (paper, abstract)
    gap4 = float(C4.predict(n, 4 * u, u)) / fresh - 1
    _, d40 = C4.effective(n, 40 * u, u)
    assert float(d40) / (40 * u) < 0.4  # at 40 epochs, far less than the tokens seen
    gap40 = float(C4.predict(n, 40 * u, u)) / float(C4.predict(n, 40 * u, 40 * u)) - 1
    assert gap40 > 0.01 and gap40 > 5 * gap4  # repetition now costs loss
    assert data_half_life(C4) == pytest.approx(15.387756 * math.log(2), rel=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# 6. critical compute and half-life


AR = DataConstrainedFit(E=1.8, A=400.0, B=1200.0, alpha=0.34, beta=0.28, R_D_star=5.0, R_N_star=5.0)
DIFF = DataConstrainedFit(E=1.8, A=400.0, B=1800.0, alpha=0.34, beta=0.28, R_D_star=500.0, R_N_star=50.0)


def brute_best_loss(fit_params, c, u, n_grid=4001):
    """min over a dense log N grid (12 decades around 1e6) of the reference law at D = C / (6 N)."""
    n = np.geomspace(1e0, 1e12, n_grid)[None, :]
    d = c[:, None] / (6 * n)
    return reference_loss(n, d, u, *fit_params).min(axis=1)


def test_critical_compute_matches_a_brute_force_crossing():
    u = 1e8
    c = np.geomspace(1e14, 1e24, 1001)
    la = brute_best_loss((1.8, 400.0, 1200.0, 0.34, 0.28, 5.0, 5.0), c, u)
    lb = brute_best_loss((1.8, 400.0, 1800.0, 0.34, 0.28, 500.0, 50.0), c, u)
    f = np.log(lb) - np.log(la)
    i = int(np.flatnonzero(f < 0)[0])
    assert f[0] > 0 and i > 0  # the AR is better at small compute, diffusion wins later
    t = f[i - 1] / (f[i - 1] - f[i])  # linear interpolation in log C
    expected = math.exp(math.log(c[i - 1]) + t * (math.log(c[i]) - math.log(c[i - 1])))
    got = critical_compute(AR, DIFF, u, compute_range=(1e14, 1e24))
    assert got == pytest.approx(expected, rel=0.01)
    # the loss curves really cross there
    at = np.array([got / 1.05, got * 1.05])
    la2, _ = optimal_loss(AR, at, u)
    lb2, _ = optimal_loss(DIFF, at, u)
    assert lb2[0] > la2[0] and lb2[1] < la2[1]


def test_critical_compute_without_crossing():
    worse = DataConstrainedFit(E=1.9, A=400.0, B=1200.0, alpha=0.34, beta=0.28, R_D_star=5.0, R_N_star=5.0)  # AR + 0.1
    assert critical_compute(AR, worse, 1e8, compute_range=(1e14, 1e24)) == math.inf  # b never below a
    # b already below a at the lower end: the range's lower bound
    assert critical_compute(worse, AR, 1e8, compute_range=(1e14, 1e24)) == 1e14


def test_optimal_loss_matches_brute_force():
    c = np.array([1e16, 1e19, 1e22])
    best, n_best = optimal_loss(DIFF, c, 1e8)
    brute = brute_best_loss((1.8, 400.0, 1800.0, 0.34, 0.28, 500.0, 50.0), c, 1e8, n_grid=40001)
    np.testing.assert_allclose(best, brute, rtol=1e-7)
    assert (best <= brute * (1 + 1e-12)).all()
    np.testing.assert_allclose(DIFF.predict(n_best, c / (6 * n_best), 1e8), best, rtol=1e-12)


def test_data_half_life():
    h = data_half_life(TRUE)
    assert math.exp(-h / RD_STAR) == pytest.approx(0.5, rel=1e-12)
    u = 1e9
    d = u * (1 + h)  # R_D = h repetitions
    step = 1e-4 * d
    _, hi = TRUE.effective(1e6, d + step, u)
    _, lo = TRUE.effective(1e6, d - step, u)
    assert float(hi - lo) / (2 * step) == pytest.approx(0.5, rel=1e-6)
    infinite = DataConstrainedFit(E=E, A=A, B=B, alpha=ALPHA, beta=BETA, R_D_star=math.inf, R_N_star=math.inf)
    assert data_half_life(infinite) == math.inf


# ---------------------------------------------------------------------------------------------------------------
# 7. bad inputs


def test_bad_inputs_raise_clear_errors():
    n, d, u = design()
    loss = true_loss(n, d, u)
    with pytest.raises(ValueError, match="same length"):
        fit_data_constrained(n[:-1], d, u, loss, fixed=STAGE1)
    for name, i in (("N", 0), ("D", 1), ("U", 2), ("L", 3)):
        for bad_value in (0.0, -1.0, np.nan, np.inf):
            arrays = [n.copy(), d.copy(), u.copy(), loss.copy()]
            arrays[i][3] = bad_value
            with pytest.raises(ValueError, match=f"^{name} must be finite and positive"):
                fit_data_constrained(*arrays, fixed=STAGE1)
    with pytest.raises(ValueError, match=r"unknown key 'gamma'.*E, A, B, alpha, beta"):
        fit_data_constrained(n, d, u, loss, fixed={"E": 1.8, "gamma": 1.0})
    with pytest.raises(ValueError, match=r"fixed\['E'\] must be finite and positive"):
        fit_data_constrained(n, d, u, loss, fixed={"E": -1.0})
    few = (d > u) | (np.arange(len(n)) < 4)  # 4 single-epoch points
    with pytest.raises(ValueError, match=r"at least 5 single-epoch points.*got 4.*fixed="):
        fit_data_constrained(n[few], d[few], u[few], loss[few])
    with pytest.raises(ValueError, match="R\\* start must be finite and positive"):
        fit_data_constrained(n, d, u, loss, fixed=STAGE1, starts=[0.0, 4.0])
    with pytest.raises(ValueError, match="pairs"):
        fit_data_constrained(n, d, u, loss, fixed=STAGE1, starts=np.ones((2, 3)))
