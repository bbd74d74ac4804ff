"""The bootstrap helper: seeded, stratified, percentile intervals, failed refits counted not hidden."""

from __future__ import annotations

import numpy as np
import pytest

from llada_lightning.scaling import bootstrap


def test_interval_of_a_mean_matches_the_normal_theory(rng):
    x = rng.normal(3.0, 2.0, 400)
    res = bootstrap(lambda v: {"mean": v.mean()}, (x,), n_resamples=2000, seed=0)
    lo, hi = res.interval("mean")
    half = 1.96 * 2.0 / np.sqrt(400)  # the textbook 95% half-width, sigma known
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert lo < x.mean() < hi and res.estimate["mean"] == x.mean()


def test_seeded_and_reproducible(rng):
    x = rng.normal(size=50)
    a = bootstrap(lambda v: {"m": np.median(v)}, [x], n_resamples=50, seed=3)
    b = bootstrap(lambda v: {"m": np.median(v)}, [x], n_resamples=50, seed=3)
    c = bootstrap(lambda v: {"m": np.median(v)}, [x], n_resamples=50, seed=4)
    np.testing.assert_array_equal(a.samples["m"], b.samples["m"])
    assert not np.array_equal(a.samples["m"], c.samples["m"])


def test_failed_refits_are_skipped_and_counted():
    x = np.arange(6.0)

    def fn(v):
        if len(np.unique(v)) < 5:
            raise ValueError("too few distinct values")
        return {"max": v.max(), "both": np.array([v.min(), v.max()])}

    res = bootstrap(fn, {"v": x}, n_resamples=100, seed=0)
    assert res.n_failed > 0 and res.n_ok + res.n_failed == 100
    assert res.failures == {"ValueError: too few distinct values": res.n_failed}
    assert res.samples["both"].shape == (res.n_ok, 2) and res.low["both"].shape == (2,)
    assert res.to_dict()["n_failed"] == res.n_failed


def test_bugs_are_not_swallowed():
    calls = []

    def fn(v):
        calls.append(1)
        if len(calls) > 1:
            raise TypeError("a bug in a refit")
        return {"x": 1.0}

    with pytest.raises(TypeError, match="a bug in a refit"):
        bootstrap(fn, [np.ones(3)], n_resamples=2)


def test_all_failed_is_an_error():
    calls = []

    def fn(v):
        calls.append(1)
        if len(calls) > 1:  # the full-data call succeeds, every refit fails
            raise ValueError("nope")
        return {"x": 1.0}

    with pytest.raises(ValueError, match="all 5 bootstrap refits failed"):
        bootstrap(fn, [np.ones(3)], n_resamples=5)


def test_strata_keep_their_counts():
    labels = np.array([0] * 3 + [1] * 7)
    res = bootstrap(lambda lab: {"n1": np.sum(lab == 1)}, [labels], n_resamples=30, seed=0, strata=labels)
    assert np.all(res.samples["n1"] == 7)
