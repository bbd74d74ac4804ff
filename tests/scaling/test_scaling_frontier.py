"""Frontier L(C) = E + A C^-alpha (and the pure power law) and the compute multiplier between two frontiers."""

from __future__ import annotations

import numpy as np
import pytest
from scaling_synth import A_F, ALPHA_F, K_MDM, E, noisy

from llada_lightning.scaling import Frontier, bootstrap, compute_multiplier, fit_frontier

C = np.logspace(18, 24, 13)


def true_frontier(c, shift=1.0):
    """Chinchilla's compute-optimal frontier, evaluated at c / shift."""
    return E + A_F * (np.asarray(c) / shift) ** -ALPHA_F


def test_noise_free_frontier_is_recovered_exactly():
    fit = fit_frontier(C, true_frontier(C))
    assert pytest.approx(E, rel=1e-6) == fit.E
    assert fit.alpha == pytest.approx(ALPHA_F, rel=1e-6)
    assert pytest.approx(A_F, rel=1e-5) == fit.A
    np.testing.assert_allclose(fit.predict(C), true_frontier(C), rtol=1e-9)


def test_noisy_frontier_within_bootstrap_interval(rng):
    loss = noisy(true_frontier(C), 0.003, rng)
    fit = fit_frontier(C, loss)
    # 99% intervals for 3 parameters: family-wise error at most 3% (Bonferroni)
    res = bootstrap(lambda c, y: fit_frontier(c, y).params(), (C, loss), n_resamples=400, seed=0, level=0.99)
    for name, true in {"E": E, "A": A_F, "alpha": ALPHA_F}.items():
        low, high = res.interval(name)
        assert low <= true <= high, (name, true, low, high)
        assert low <= fit.params()[name] <= high
    low, high = res.interval("alpha")
    assert high - low < 0.1  # informative


def test_pure_power_law_is_smdm_line_in_log_space():
    c = np.logspace(18, 21, 5)
    loss = 30.0 * c**-0.05  # log L = log 30 - 0.05 log C
    fit = fit_frontier(c, loss, irreducible=False)
    assert fit.E == 0.0 and not fit.irreducible
    assert fit.alpha == pytest.approx(0.05, rel=1e-10)
    assert pytest.approx(30.0, rel=1e-8) == fit.A


def test_e_stays_below_the_smallest_loss_and_non_negative(rng):
    # a law with no floor (pure power law) fitted with E: E must stay in [0, min loss)
    loss = noisy(50.0 * C**-0.07, 0.002, rng)
    fit = fit_frontier(C, loss)
    assert 0.0 <= fit.E < loss.min()


def test_compute_for_loss_inverts_predict_and_is_nan_below_e():
    f = Frontier(E=1.7, log_A=np.log(1e3), alpha=0.15, irreducible=True, n_points=0, rss_log=0.0)
    np.testing.assert_allclose(f.compute_for_loss(f.predict(C)), C, rtol=1e-10)
    assert np.isnan(f.compute_for_loss([1.7, 1.0])).all()


def test_too_few_points_raise():
    with pytest.raises(ValueError, match="3 parameters"):
        fit_frontier(C[:3], true_frontier(C[:3]))
    with pytest.raises(ValueError, match="2 distinct compute"):
        fit_frontier([1e18, 1e18], [3.0, 3.1], irreducible=False)


# ---- compute multiplier -------------------------------------------------------------------------------------


def frontier_of(shift: float) -> Frontier:
    """The true frontier evaluated at C / shift, written as E + (A shift^alpha) C^-alpha."""
    return Frontier(
        E=E, log_A=np.log(A_F) + ALPHA_F * np.log(shift), alpha=ALPHA_F, irreducible=True, n_points=0, rss_log=0
    )


def test_multiplier_is_exact_for_a_shifted_frontier():
    k = compute_multiplier(frontier_of(K_MDM), frontier_of(1.0), C)
    np.testing.assert_allclose(k, K_MDM, rtol=1e-10)
    k_inv = compute_multiplier(frontier_of(1.0), frontier_of(K_MDM), C)
    np.testing.assert_allclose(k_inv, 1 / K_MDM, rtol=1e-10)


def test_multiplier_solves_its_definition_when_exponents_differ():
    mdm = Frontier(E=2.0, log_A=np.log(2e3), alpha=0.17, irreducible=True, n_points=0, rss_log=0)
    arm = Frontier(E=1.7, log_A=np.log(1e3), alpha=0.15, irreducible=True, n_points=0, rss_log=0)
    k = compute_multiplier(mdm, arm, C)
    ok = np.isfinite(k)
    assert ok.sum() >= 5
    np.testing.assert_allclose(mdm.predict(k[ok] * C[ok]), arm.predict(C[ok]), rtol=1e-10)  # L_MDM(kC) = L_ARM(C)
    # where the ARM is below the MDM's floor, k is NaN (unreachable), never a number
    unreachable = arm.predict(C) <= mdm.E
    assert unreachable.any() and np.isnan(k[unreachable]).all()


def test_multiplier_from_fitted_noisy_frontiers_within_bootstrap_interval(rng):
    arm_loss = noisy(true_frontier(C), 0.002, rng)
    mdm_loss = noisy(true_frontier(C, shift=K_MDM), 0.002, rng)
    at = np.array([1e19, 1e21, 1e23])

    def k_of(is_mdm, c, y):
        return {"k": compute_multiplier(fit_frontier(c[is_mdm], y[is_mdm]), fit_frontier(c[~is_mdm], y[~is_mdm]), at)}

    is_mdm = np.repeat([True, False], len(C))
    data = (is_mdm, np.concatenate([C, C]), np.concatenate([mdm_loss, arm_loss]))
    res = bootstrap(k_of, data, n_resamples=400, seed=0, level=0.99, strata=is_mdm)  # 3 values: Bonferroni
    low, high = res.interval("k")
    assert np.all(low <= K_MDM) and np.all(high >= K_MDM), (low, high)
    assert np.all(high / low < 4)  # informative: within a factor of 2 either side of 16
