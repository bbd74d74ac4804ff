"""Figures say what their bands rest on: a band is drawn only where its intervals are reliable, the legend names a
band only when one is drawn, and it prints the refit count whenever refits failed."""

from __future__ import annotations

import copy
import csv

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from scaling_synth import result_record, study_points, write_run

from llada_lightning.scaling import collect, fit_study
from llada_lightning.scaling import plots as plots_module


@pytest.fixture(scope="module")
def fit_and_table(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    for objective, c, n, d, loss in study_points(np.random.default_rng(7), sigma=0.002, budgets=(1e18, 1e19, 1e20)):
        for i, (ci, ni, di, li) in enumerate(zip(c, n, d, loss, strict=True)):
            write_run(root, f"{objective}/r{i:02d}", result_record(objective, ni, di, float(li), ci))
    table = collect(root, verbose=False)
    return fit_study(table, n_bootstrap=100, parametric=False), table


@pytest.fixture
def captured(monkeypatch):
    """Legend texts and the number of filled bands of every figure saved."""
    figures: dict[str, dict] = {}

    def save(fig, stem, formats):
        legends = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        bands = sum(isinstance(c, PolyCollection) for ax in fig.axes for c in ax.collections)
        figures[stem.name] = {"legend": legends, "bands": bands}
        return []

    monkeypatch.setattr(plots_module, "save_figure", save)
    return figures


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_reliable_bands_are_drawn_and_named(fit_and_table, captured, tmp_path):
    fit, _ = fit_and_table
    assert all(fit["comparison"]["curves"]["k"]["reliable"])
    plots_module.plot_multiplier(fit, tmp_path / "multiplier")
    legend = captured["multiplier"]["legend"]
    assert captured["multiplier"]["bands"] == 1 and any("band: 95% bootstrap" in t for t in legend), legend
    assert not any("refits ok" in t for t in legend)  # none failed
    assert all(r["k_low"] and r["k_high"] for r in _rows(tmp_path / "multiplier.csv"))


def test_an_unreliable_band_is_not_drawn_and_the_legend_says_why(fit_and_table, captured, tmp_path):
    fit = copy.deepcopy(fit_and_table[0])
    curve = fit["comparison"]["curves"]["k"]
    n = len(curve["C"])
    curve.update(reliable=[False] * n, n_failed=[60] * n, n_ok=[40] * n, low=[None] * n, high=[None] * n)
    for rec in fit["comparison"]["interval"]["k"]:
        rec.update(reliable=False, low=None, high=None, n_failed=60, n_ok=40, problem_kind="failed refits")
    plots_module.plot_multiplier(fit, tmp_path / "multiplier")
    legend = captured["multiplier"]["legend"]
    assert captured["multiplier"]["bands"] == 0
    assert any("no 95% band: unreliable (60/100 refits failed)" in t for t in legend), legend
    assert not any("band: 95% bootstrap" in t for t in legend)
    assert any("interval unreliable" in t for t in legend)  # the budgets' points are drawn without error bars
    rows = _rows(tmp_path / "multiplier.csv")
    assert rows and not any(r["k_low"] or r["k_high"] for r in rows)  # no bounds that were not drawn


def test_a_band_with_failed_refits_prints_the_success_count(fit_and_table, captured, tmp_path):
    fit = copy.deepcopy(fit_and_table[0])
    curve = fit["objectives"]["arm"]["frontier"]["curves"]["L_star"]
    curve["n_failed"] = [3] * len(curve["C"])
    plots_module.plot_frontier(fit, tmp_path / "frontier")
    legend = captured["frontier"]["legend"]
    assert any("band: 95% bootstrap, 97/100 refits ok" in t for t in legend), legend


def test_interval_in_a_legend_is_printed_only_when_reliable(fit_and_table, captured, tmp_path):
    fit = copy.deepcopy(fit_and_table[0])
    rec = fit["objectives"]["llada"]["isoflop"]["interval"]["a"]
    low, high = rec["low"], rec["high"]
    plots_module.plot_optimal_size(fit, tmp_path / "optimal_size")
    assert any(f"[{low:.4g}, {high:.4g}]" in t for t in captured["optimal_size"]["legend"])
    rec.update(reliable=False, low=None, high=None, problem_kind="zero width", problem="zero width")
    plots_module.plot_optimal_size(fit, tmp_path / "optimal_size")
    legend = captured["optimal_size"]["legend"]
    assert any("a = " in t and "[unreliable: zero width; 100/100 refits ok]" in t for t in legend), legend
