"""The bootstrap: seeded, stratified percentile intervals that say what they rest on; failed refits are counted as
unbounded outcomes, never conditioned away; degenerate intervals are reported as unreliable, never as intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llada_lightning.scaling import bootstrap
from llada_lightning.scaling.errors import FitError
from llada_lightning.scaling.requirements import min_resamples


def test_interval_of_a_mean_matches_the_normal_theory(rng):
    x = rng.normal(3.0, 2.0, 400)
    res = bootstrap(lambda v: {"mean": v.mean()}, (x,), n_resamples=2000, seed=0)
    lo, hi = res.interval("mean")
    half = 1.96 * 2.0 / np.sqrt(400)  # the textbook 95% half-width, sigma known
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert lo < x.mean() < hi and res.estimate["mean"] == x.mean()
    rec = res.record("mean")
    assert rec["reliable"] and (rec["low"], rec["high"]) == (lo, hi)
    assert (rec["n_resamples"], rec["n_ok"], rec["n_failed"], rec["failures"]) == (2000, 2000, 0, {})


def test_seeded_and_reproducible(rng):
    x = rng.normal(size=50)
    a = bootstrap(lambda v: {"m": np.median(v)}, [x], n_resamples=50, seed=3)
    b = bootstrap(lambda v: {"m": np.median(v)}, [x], n_resamples=50, seed=3)
    c = bootstrap(lambda v: {"m": np.median(v)}, [x], n_resamples=50, seed=4)
    np.testing.assert_array_equal(a.samples["m"], b.samples["m"])
    assert not np.array_equal(a.samples["m"], c.samples["m"])


def _sometimes_failing(x, fail_if):
    def fn(v):
        if fail_if(v):
            raise FitError("budget 1e+18 has a concave parabola: c2 = -0.3", kind="budget 1e+18: concave parabola")
        return {"mean": v.mean(), "both": np.array([v.min(), v.max()])}

    return fn


def test_failed_refits_are_counted_by_kind_and_kept_as_missing_values(rng):
    x = rng.normal(size=30)
    fn = _sometimes_failing(x, lambda v: v.mean() > np.quantile(x, 0.5) + 0.3)  # the high resamples fail
    res = bootstrap(fn, {"v": x}, n_resamples=400, seed=1)
    assert 0 < res.n_failed < 400 and res.n_ok + res.n_failed == 400
    assert res.failures == {"budget 1e+18: concave parabola": res.n_failed}
    assert res.samples["both"].shape == (400, 2) and np.isnan(res.samples["both"]).any(axis=1).sum() == res.n_failed
    rec = res.record("mean")
    assert (rec["n_ok"], rec["n_failed"], rec["failures"]) == (res.n_ok, res.n_failed, res.failures)
    assert isinstance(res.record("both"), list) and len(res.record("both")) == 2


def test_few_failures_widen_the_interval_to_hold_any_value_the_failed_refits_could_have_had(rng):
    x = rng.normal(size=40)
    fails, calls = [], []

    def fn(v):
        calls.append(1)
        if len(calls) > 1 and len(fails) < 6 and v.mean() > np.median(x):  # 6 refits with a high mean fail
            fails.append(1)
            raise ValueError("no minimum")
        return {"mean": v.mean()}

    res = bootstrap(fn, [x], n_resamples=400, seed=2)
    rec = res.record("mean")
    assert 0 < rec["n_failed"] <= math.floor(0.025 * 399) and rec["reliable"], rec
    values = res.samples["mean"]
    failed = np.isnan(values)
    for value in (-1e6, 1e6, 0.0, float(np.nanmean(values))):  # whatever the failed refits had given ...
        imputed = np.sort(np.where(failed, value, values))
        lo, hi = np.quantile(imputed, [0.025, 0.975])
        assert rec["low"] <= lo and hi <= rec["high"]  # ... its interval lies inside the reported one
    ok = np.sort(values[~failed])
    conditioned = np.quantile(ok, [0.025, 0.975])  # dropping the failures would have given a narrower interval
    assert rec["high"] - rec["low"] >= conditioned[1] - conditioned[0]


def test_too_many_failures_make_the_interval_unreliable_not_conditioned(rng):
    x = rng.normal(size=20)
    fn = _sometimes_failing(x, lambda v: v.mean() > x.mean())  # about half the refits fail
    res = bootstrap(fn, [x], n_resamples=200, seed=0)
    rec = res.record("mean")
    assert not rec["reliable"] and rec["low"] is None and rec["high"] is None
    assert rec["problem_kind"] == "failed refits" and f"{rec['n_failed']} of 200 refits failed" in rec["problem"]
    lo, hi = res.interval("mean")
    assert math.isnan(lo) and math.isnan(hi)


def test_non_finite_values_count_as_failures_but_infinities_are_values():
    x = np.arange(10.0)

    def fn(v):
        return {
            "nan_when_small": np.nan if v.mean() < 4.5 else v.mean(),
            "inf_when_small": np.inf if v.mean() < 3 else 1.0,
        }

    res = bootstrap(fn, [x], n_resamples=200, seed=0)
    nan_rec, inf_rec = res.record("nan_when_small"), res.record("inf_when_small")
    assert nan_rec["failures"] == {"non-finite value": nan_rec["n_failed"]} and not nan_rec["reliable"]
    assert inf_rec["n_failed"] == 0 and inf_rec["n_ok"] == 200  # +inf is a value of known direction


def test_all_refits_failing_is_reported_not_raised():
    calls = []

    def fn(v):
        calls.append(1)
        if len(calls) > 1:  # the full-data call succeeds, every refit fails
            raise ValueError("nope 3.5")
        return {"x": 1.0}

    res = bootstrap(fn, [np.ones(3)], n_resamples=100)
    rec = res.record("x")
    assert res.n_ok == 0 and rec["n_failed"] == 100 and not rec["reliable"]
    assert rec["failures"] == {"ValueError: nope #": 100}  # kinds lose their numbers, so counts add up


def test_too_few_resamples_degenerate_and_biased_intervals_are_unreliable(rng):
    x = rng.normal(size=30)
    few = bootstrap(lambda v: {"m": v.mean()}, [x], n_resamples=min_resamples(0.95) - 1)
    assert few.record("m")["problem_kind"] == "too few resamples"
    assert min_resamples(0.95) == 80 and min_resamples(0.99) == 400  # 2 resamples in each tail
    const = bootstrap(lambda v: {"c": 0.4263}, [x], n_resamples=200)
    assert const.record("c")["problem_kind"] == "zero width" and const.record("c")["low"] is None
    # the number of distinct values is 30 on the data and fewer on almost every resample: an interval below it
    shifted = bootstrap(lambda v: {"k": len(np.unique(v))}, [x], n_resamples=200)
    assert shifted.record("k")["problem_kind"] == "excludes the estimate" and not shifted.record("k")["reliable"]


def test_a_problem_skips_the_refits_and_every_interval_says_why():
    res = bootstrap(lambda v: {"m": v.mean()}, [np.arange(5.0)], n_resamples=200, problem="no residual df")
    rec = res.record("m")
    assert res.n_resamples == 0 and not rec["reliable"] and rec["problem"] == "no residual df"


def test_band_is_pointwise_with_counts(rng):
    x = rng.normal(size=25)
    res = bootstrap(lambda v: {"curve": v.mean() + np.arange(4.0)}, [x], n_resamples=200, seed=0)
    band = res.band("curve")
    assert all(band["reliable"]) and band["n_ok"] == [200] * 4 and band["n_failed"] == [0] * 4
    np.testing.assert_allclose(np.diff(band["low"]), 1.0) and np.testing.assert_allclose(np.diff(band["high"]), 1.0)


def test_bugs_are_not_swallowed():
    calls = []

    def fn(v):
        calls.append(1)
        if len(calls) > 1:
            raise TypeError("a bug in a refit")
        return {"x": 1.0}

    with pytest.raises(TypeError, match="a bug in a refit"):
        bootstrap(fn, [np.ones(3)], n_resamples=2)


def test_strata_keep_their_counts():
    labels = np.array([0] * 3 + [1] * 7)
    res = bootstrap(lambda lab: {"n1": np.sum(lab == 1)}, [labels], n_resamples=30, seed=0, strata=labels)
    assert np.all(res.samples["n1"] == 7)


def test_an_infinite_bound_of_known_direction_is_a_bound_not_zero_width(rng):
    from llada_lightning.scaling.summary import fmt_interval

    values = iter(np.concatenate([[16.0], rng.uniform(15, 17, 190), np.full(10, np.inf)]))  # 5% never reach: inf
    res = bootstrap(lambda v: {"k": next(values)}, [np.arange(3.0)], n_resamples=200)
    rec = res.record("k")
    assert rec["reliable"] and rec["high"] == np.inf and 15 <= rec["low"] < 16, rec
    assert fmt_interval(rec).startswith(f" [{rec['low']:.4g}, inf) (200/200 refits ok)")


def test_tail_index_is_exact_where_floating_point_rounds_q_down():
    from llada_lightning.scaling.bootstrap import tail_index

    q = (1 - 0.8) / 2  # 0.09999999999999998
    assert q < 0.1 and tail_index(q, 201) == 20 and tail_index(q, 21) == 2
    assert tail_index(0.025, 200) == 4 and tail_index(0.005, 400) == 1


def test_refits_in_forked_workers_give_the_same_result_as_one_process():
    rng = np.random.default_rng(3)
    x = np.linspace(0.0, 1.0, 40)
    y = 2.0 * x + 0.1 * rng.standard_normal(40)

    def fit(x, y):
        if len(np.unique(x)) < 25:  # about a third of resamples fail, counted the same way in both
            raise FitError("too narrow", kind="narrow")
        slope, intercept = np.polyfit(x, y, 1)
        return {"slope": slope, "intercept": intercept}

    strata = (x > 0.5).astype(int)
    one = bootstrap(fit, (x, y), n_resamples=60, seed=5, strata=strata)
    two = bootstrap(fit, (x, y), n_resamples=60, seed=5, strata=strata, workers=2)
    assert one.failures == two.failures and one.failures.get("narrow", 0) > 0
    for k in one.samples:
        np.testing.assert_array_equal(one.samples[k], two.samples[k])
    assert one.record("slope") == two.record("slope")
