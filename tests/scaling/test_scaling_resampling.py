"""The residual bootstrap of an IsoFLOP design: the pooled modified residuals, the Student-t scaling, and intervals
of the exponent that cover at their nominal rate over independent synthetic sweeps."""

from __future__ import annotations

import numpy as np
import pytest
from scaling_synth import A_OPT, chinchilla_loss, isoflop_grid, noisy

from llada_lightning.scaling import bootstrap, fit_isoflop
from llada_lightning.scaling.isoflop import group_budgets
from llada_lightning.scaling.resampling import ParabolaResiduals, loss_resampler


def test_fitted_values_leverage_and_degrees_of_freedom(rng):
    x = np.linspace(7.0, 9.0, 6)
    y = 3.0 + 0.2 * (x - 8.1) ** 2 + rng.normal(0, 0.01, 6)
    labels = np.full(6, 1e19)
    model = ParabolaResiduals(labels, 10**x, y)
    np.testing.assert_allclose(model.fitted, np.polyval(np.polyfit(x, y, 2), x), atol=1e-10)
    assert model.df == 6 - 3 and model.problem is None
    # the modified residuals r_i / sqrt(1 - h_ii), centred: h from the hat matrix X (X'X)^-1 X' of [x^2, x, 1]
    design = np.vander(x, 3)
    h = np.diag(design @ np.linalg.inv(design.T @ design) @ design.T)
    r = (y - model.fitted) / np.sqrt(1 - h)
    np.testing.assert_allclose(model.residuals, r - r.mean(), atol=1e-10)


def test_modified_residuals_carry_the_noise_variance():
    """E[r_i^2 / (1 - h_ii)] = sigma^2 (Davison & Hinkley 1997, eq. 6.9): unbiased, unlike the raw residuals."""
    sigma, x = 0.01, np.linspace(7.0, 9.0, 5)
    raw, modified = [], []
    for seed in range(3000):
        y = 3.0 + 0.2 * (x - 8.0) ** 2 + np.random.default_rng(seed).normal(0, sigma, 5)
        model = ParabolaResiduals(np.full(5, 1e19), 10**x, y)
        raw.append(np.mean((y - model.fitted) ** 2))
        modified.append(model.noise_sd**2)
    assert np.mean(modified) == pytest.approx(sigma**2, rel=0.05)
    assert np.mean(raw) == pytest.approx(sigma**2 * 2 / 5, rel=0.05)  # (n - p) / n of it: too small


def test_student_t_scaling_and_no_degrees_of_freedom():
    x = np.log10(np.array([1e7, 2e7, 4e7, 8e7] * 3))
    labels = np.repeat([1e18, 1e19, 1e20], 4)
    y = 3.0 + 0.1 * (x - 7.5) ** 2 + np.tile([0.01, -0.02, 0.015, -0.005], 3)
    model = ParabolaResiduals(labels, 10**x, y)
    assert model.df == 3
    assert model.scale == pytest.approx(3.182446 / 1.959964, rel=1e-5)  # t_3(0.975) / z(0.975), from tables
    exact = ParabolaResiduals(labels[[0, 1, 2, 4, 5, 6]], 10 ** x[[0, 1, 2, 4, 5, 6]], y[[0, 1, 2, 4, 5, 6]])
    assert exact.df == 0 and "no residual degrees of freedom" in exact.problem


def test_a_refit_keeps_the_design_and_points_without_a_parabola(rng):
    labels = np.array([1e18] * 4 + [1e19] * 2)  # the second budget has only 2 sizes: no parabola describes it
    n = np.array([1e7, 2e7, 4e7, 8e7, 1e8, 2e8])
    y = 3.0 + rng.normal(0, 0.01, 6)
    model = ParabolaResiduals(labels, n, y)
    resample = loss_resampler([labels, n, y], 2, [(slice(None), model)])
    draws = [resample(np.random.default_rng(s)) for s in range(20)]
    assert all(np.array_equal(d[0], labels) and np.array_equal(d[1], n) for d in draws)
    assert all(np.array_equal(d[2][4:], y[4:]) for d in draws)
    assert len({tuple(d[2][:4]) for d in draws}) > 10


def _isoflop_interval(c, n, y, seed, scheme):
    full = fit_isoflop(c, n, y)
    fn = lambda c, n, y: {"a": fit_isoflop(c, n, y, budgets=full.used).a}  # noqa: E731
    if scheme == "pairs":
        return bootstrap(fn, (c, n, y), n_resamples=200, seed=seed, strata=c).record("a")
    model = ParabolaResiduals(group_budgets(c), n, y)
    resample = loss_resampler([c, n, y], 2, [(slice(None), model)])
    return bootstrap(fn, (c, n, y), n_resamples=200, seed=seed, resample=resample, scheme="residual").record("a")


def test_residual_intervals_of_the_exponent_cover_at_their_nominal_rate():
    """40 independent sweeps (4 budgets x 6 sizes, 0.2% noise): honest 95% intervals cover A_OPT about 38 times;
    at least 34 (P(fewer) < 3%); an unreliable interval counts as a miss. They must also be informative."""
    covered, widths = 0, []
    for seed in range(40):
        c, n, d = isoflop_grid(np.logspace(18, 21, 4), n_sizes=6, half_width=0.5)
        y = noisy(chinchilla_loss(n, d), 0.002, np.random.default_rng(500 + seed))
        rec = _isoflop_interval(c, n, y, seed, "residual")
        if rec["reliable"]:
            covered += rec["low"] <= A_OPT <= rec["high"]
            widths.append(rec["high"] - rec["low"])
    assert covered >= 34, covered
    assert np.mean(widths) < 0.1


def test_pairs_resampling_of_a_four_size_design_fails_where_residuals_do_not(rng):
    """Resampling 4 runs of a budget leaves fewer than 3 distinct sizes a third of the time: the pairs bootstrap
    reports those refits (and its interval as unreliable); the residual bootstrap keeps the design."""
    c, n, d = isoflop_grid(np.logspace(18, 20, 3), n_sizes=4, half_width=0.45)
    y = noisy(chinchilla_loss(n, d), 0.001, rng)
    pairs = _isoflop_interval(c, n, y, 0, "pairs")
    assert pairs["n_failed"] > 60 and not pairs["reliable"], pairs
    assert any("fewer than 3 distinct sizes" in kind for kind in pairs["failures"]), pairs["failures"]
    residual = _isoflop_interval(c, n, y, 0, "residual")
    assert residual["reliable"] and residual["n_failed"] == 0, residual


def test_only_the_budgets_of_the_fit_give_residuals(rng):
    x = np.tile(np.linspace(7.0, 9.0, 5), 2)
    labels = np.repeat([1e18, 1e19], 5)
    y = 3.0 + 0.2 * (x - 8.0) ** 2 + rng.normal(0, 0.001, 10)
    y[5:] += np.array([0.0, 0.3, -0.3, 0.3, 0.0])  # the second budget is spoilt (misfiled runs, say)
    both = ParabolaResiduals(labels, 10**x, y)
    used = ParabolaResiduals(labels, 10**x, y, budgets=[1e18])
    assert used.df == 2 and both.df == 4
    assert used.noise_sd < 0.01 < both.noise_sd  # the spoilt budget no longer inflates the noise
    assert np.array_equal(used.draw(np.random.default_rng(0))[5:], y[5:])  # and keeps its losses in refits
