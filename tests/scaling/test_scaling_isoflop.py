"""IsoFLOP profiles (Approach 2): exponents, vertex flags, grid width, and the degenerate-sweep error."""

from __future__ import annotations

import numpy as np
import pytest
from scaling_synth import A_OPT, B_OPT, chinchilla_loss, isoflop_grid, n_opt, noisy

from llada_lightning.scaling import bootstrap, fit_isoflop
from llada_lightning.scaling.isoflop import fit_parabola, group_budgets

BUDGETS = np.logspace(18, 22, 5)


def test_noise_free_exponents_match_beta_over_alpha_plus_beta():
    c, n, d = isoflop_grid(BUDGETS, n_sizes=7, half_width=0.5)
    fit = fit_isoflop(c, n, chinchilla_loss(n, d))
    # Along each isoFLOP line the Chinchilla law, in log N around N_opt(C), is the same curve scaled by a power
    # of C, so the parabola's vertex error is the same at every budget and leaves the slope exact.
    assert fit.a == pytest.approx(A_OPT, abs=1e-9)
    assert fit.b == pytest.approx(B_OPT, abs=1e-9)
    offsets = np.array([np.log10(f.N_star / n_opt(f.budget)) for f in fit.budgets])
    # The parabola is a 2nd-order approximation: on +-0.5 decades its vertex is off by a few thousandths of a decade.
    assert np.all(np.abs(offsets) < 0.01)
    np.testing.assert_allclose(offsets, offsets[0], atol=1e-9)
    for f in fit.budgets:
        assert f.convex and f.interior and f.n_sizes == 7
        assert f.log10_span == pytest.approx(1.0)
        assert f.log10_below + f.log10_above == pytest.approx(1.0)
        assert f.log10_below == pytest.approx(0.5, abs=0.01)
        assert f.D_star == pytest.approx(f.budget / (6 * f.N_star))
    np.testing.assert_allclose(fit.predict_n_opt(BUDGETS) * fit.predict_d_opt(BUDGETS) * 6, BUDGETS, rtol=1e-9)


def test_noisy_exponent_within_bootstrap_interval(rng):
    c, n, d = isoflop_grid(BUDGETS, n_sizes=9, half_width=0.6)
    loss = noisy(chinchilla_loss(n, d), 0.002, rng)
    res = bootstrap(
        lambda c, n, y: {"a": fit_isoflop(c, n, y).a},
        (c, n, loss),
        n_resamples=200,
        seed=0,
        strata=c,  # every refit sees every budget
    )
    low, high = res.interval("a")
    assert low <= A_OPT <= high, (low, high)
    assert high - low < 0.1


def test_off_centre_vertex_is_flagged_and_left_out():
    # one budget sampled entirely below its optimum: the vertex is extrapolated, so it must not be used
    c, n, d = isoflop_grid(BUDGETS, n_sizes=5, half_width=0.4)
    shifted = c == BUDGETS[2]
    n = np.where(shifted, n / 10**0.9, n)
    d = c / (6 * n)
    fit = fit_isoflop(c, n, chinchilla_loss(n, d))
    bad = next(f for f in fit.budgets if f.budget == BUDGETS[2])
    assert bad.convex and not bad.interior and bad.log10_above < 0
    assert BUDGETS[2] not in fit.used and len(fit.used) == 4
    assert any("above the largest size" in w for w in fit.warnings)
    assert fit.a == pytest.approx(A_OPT, abs=1e-6)  # the remaining budgets still give the right answer
    assert BUDGETS[2] in fit_isoflop(c, n, chinchilla_loss(n, d), allow_exterior=True).used


def test_concave_profile_is_flagged_not_used():
    c, n, d = isoflop_grid(BUDGETS, n_sizes=5)
    loss = chinchilla_loss(n, d)
    concave = c == BUDGETS[0]
    x = np.log10(n[concave])
    loss[concave] = 3.0 - (x - x.mean()) ** 2  # a maximum, not a minimum
    fit = fit_isoflop(c, n, loss)
    bad = next(f for f in fit.budgets if f.budget == BUDGETS[0])
    assert not bad.convex and np.isnan(bad.N_star) and not bad.usable()
    assert BUDGETS[0] not in fit.used
    assert any("not convex" in w for w in fit.warnings)


def test_one_size_per_budget_is_a_clear_error_not_an_answer():
    c = BUDGETS
    n = n_opt(c)
    with pytest.raises(ValueError, match=r"has only 1 model sizes; an IsoFLOP fit needs >= 3 — add sizes to the sweep"):
        fit_isoflop(c, n, chinchilla_loss(n, c / (6 * n)))


def test_two_sizes_at_a_budget_is_a_clear_error():
    with pytest.raises(ValueError, match=r"budget 1e\+20 has only 2 model sizes; an IsoFLOP fit needs >= 3"):
        fit_parabola(1e20, [1e8, 1e8, 2e8], [3.0, 3.01, 2.9])


def test_a_single_usable_budget_cannot_give_exponents():
    c, n, d = isoflop_grid([1e20], n_sizes=5)
    with pytest.raises(ValueError, match=">= 2 budgets"):
        fit_isoflop(c, n, chinchilla_loss(n, d))


def test_partial_budget_is_skipped_with_a_warning():
    c, n, d = isoflop_grid(BUDGETS, n_sizes=5)
    keep = ~((c == BUDGETS[1]) & (np.arange(len(c)) % 5 >= 2))  # budget 2 keeps only 2 sizes
    fit = fit_isoflop(c[keep], n[keep], chinchilla_loss(n[keep], d[keep]))
    assert BUDGETS[1] not in fit.used and len(fit.used) == 4
    assert any("has only 2 model sizes" in w for w in fit.warnings)


def test_d_star_from_token_counts_follows_their_convention():
    # under a "full" FLOP convention the runs train on C / (6.6 N) tokens, not C / (6N)
    c, n, _ = isoflop_grid(BUDGETS, n_sizes=5)
    tokens = c / (6.6 * n)
    fit = fit_isoflop(c, n, chinchilla_loss(n, tokens), tokens)
    for f in fit.budgets:
        assert f.D_star == pytest.approx(f.budget / (6.6 * f.N_star), rel=1e-9)


def test_budgets_group_within_two_percent():
    labels = group_budgets([1e18, 0.995e18, 1.01e18, 1e19, 0.99e19, 3e19])
    assert len(np.unique(labels)) == 3
    assert labels[0] == labels[1] == labels[2] and labels[3] == labels[4] != labels[5]
