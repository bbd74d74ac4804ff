"""Designs: the registry, loading by name / YAML / --quick / --set, one-line errors, and the isoflop design's
placement of windows (each budget waits for the smaller ones, then centres on the predicted optimum)."""

from __future__ import annotations

import math

import pytest

from llada_lightning.config.errors import ConfigError
from llada_lightning.study.design import DESIGNS, cell_key, load_design
from llada_lightning.study.isoflop import IsoFLOPDesign, size_label


def test_registry_and_loading(tmp_path):
    assert "isoflop" in DESIGNS
    d = load_design()
    assert isinstance(d, IsoFLOPDesign) and d.name == "isoflop"
    q = load_design("isoflop", quick=True)
    assert q.name == IsoFLOPDesign.QUICK["name"] and q.budgets == IsoFLOPDesign.QUICK["budgets"]
    s = load_design("isoflop", sets=["budgets=[1e9, 1e10]", "sizes_per_budget=3"])
    assert s.budgets == [1e9, 1e10] and s.sizes_per_budget == 3
    f = tmp_path / "mine.yaml"
    f.write_text("design: isoflop\nname: mine\nwidths: [16, 24, 32, 48]\nsizes_per_budget: 3\n")
    m = load_design(str(f))
    assert m.name == "mine" and m.widths == [16, 24, 32, 48]
    assert m.params()["design"] == "isoflop"


@pytest.mark.parametrize(
    ("ref", "sets", "text", "expected"),
    [
        ("nope", [], None, "no such study design 'nope'"),
        ("isoflop", ["budgets=[1e9, -1]"], None, "budgets="),
        ("isoflop", ["widths=[32, 16]"], None, "must be increasing"),
        ("isoflop", ["sizes_per_budget=2"], None, "a parabola needs 3 sizes"),
        ("isoflop", ["placement=somewhere"], None, "placement='somewhere'"),
        ("isoflop", ["colour=blue"], None, "unknown parameter(s) ['colour']"),
        ("isoflop", ["budgets"], None, "write PARAM=VALUE"),
        ("isoflop", ["widths=[16, 24, 32, 33]", "sizes_per_budget=3"], None, "width 33"),
        ("isoflop", ["base=[model.vocab_size=0]"], None, "model.vocab_size"),
        ("isoflop", ["lr_schedule=linear"], None, "lr_schedule='linear' is not one of"),
        ("isoflop", ["warmup_steps=-1"], None, "warmup_steps=-1"),
        ("isoflop", ["share_trunks=maybe"], None, "share_trunks='maybe'"),
        ("FILE", [], "name: x\n", "names no design"),
        ("FILE", [], "design: isoflop\nbudgets: [1e9\n", "not valid YAML"),
    ],
)
def test_bad_designs_are_one_line_errors(tmp_path, ref, sets, text, expected):
    if ref == "FILE":
        ref = str(tmp_path / "d.yaml")
        (tmp_path / "d.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_design(ref, sets=sets)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_size_labels():
    assert [size_label(n) for n in (4668, 18552, 131392, 1_234_567, 999)] == ["m4.7k", "m19k", "m131k", "m1.2M", "m999"]


def losses_with_optimum(design, widths, n_star):
    return [3.0 + 0.5 * math.log10(design.n_params(w) / n_star) ** 2 for w in widths]


def test_auto_placement_waits_for_smaller_budgets_then_centres_on_the_predicted_optimum():
    d = load_design(
        "isoflop",
        sets=[
            "budgets=[1e10, 1e11, 1e12]",
            "widths=[8, 12, 16, 24, 32, 48, 64, 96]",
            "sizes_per_budget=3",
            "objectives=[arm]",
            "first_centre=16",
        ],
    )
    windows, _ = d.place({}, {})
    assert windows == {cell_key("arm", 1e10): [12, 16, 24]}  # only the first budget: the others wait
    first = windows[cell_key("arm", 1e10)]
    # the first budget finishes with its optimum at the size of width 16: the second is moved by C^0.5 from it
    finished = {cell_key("arm", 1e10): (first, losses_with_optimum(d, first, d.n_params(16)))}
    windows2, notes = d.place(windows, finished)
    assert windows2[cell_key("arm", 1e10)] == first  # a placed window never moves
    target = d.n_params(16) * 10**0.5
    second = windows2[cell_key("arm", 1e11)]
    centre = math.sqrt(d.n_params(second[0]) * d.n_params(second[-1]))
    others = [d.widths[i : i + 3] for i in range(len(d.widths) - 2)]
    best = min(others, key=lambda ws: abs(math.log(math.sqrt(d.n_params(ws[0]) * d.n_params(ws[-1])) / target)))
    assert second == best and abs(math.log(centre / target)) < math.log(2)
    assert cell_key("arm", 1e12) not in windows2 and any("moved by C^0.5" in n for n in notes)
    assert d.place(windows2, finished)[0] == windows2  # the second budget has not finished: nothing new


def test_a_prediction_beyond_the_ladder_is_placed_at_its_end_with_a_warning():
    d = load_design(
        "isoflop",
        sets=[
            "budgets=[1e10, 1e14]",
            "widths=[8, 12, 16, 24]",
            "sizes_per_budget=3",
            "objectives=[arm]",
            "first_centre=12",
        ],
    )
    windows, _ = d.place({}, {})
    first = windows[cell_key("arm", 1e10)]
    finished = {cell_key("arm", 1e10): (first, losses_with_optimum(d, first, d.n_params(12)))}
    windows2, notes = d.place(windows, finished)
    assert windows2[cell_key("arm", 1e14)] == [12, 16, 24]
    assert any("WARNING: beyond the largest size" in n for n in notes)


def test_placement_all_places_every_budget_at_once():
    d = load_design("isoflop", sets=["placement=all", "widths=[16, 24, 32]", "sizes_per_budget=3"])
    windows, _ = d.place({}, {})
    assert set(windows) == {cell_key(o, b) for o in d.objectives for b in d.budgets}
    assert all(w == [16, 24, 32] for w in windows.values())


def test_the_schedule_parameters_reach_every_run_and_the_spec():
    from llada_lightning.config.compose import compose

    d = load_design("isoflop", sets=["placement=all", "widths=[16, 24, 32]", "sizes_per_budget=3"])
    assert d.lr_schedule == "wsd" and d.shares_trunks  # the default (experiments/wsd-vs-cosine)
    cfg = compose(d.run_overrides() + ["train.flops_budget=1e9"])
    assert (cfg.train.lr_schedule, cfg.train.warmup_fraction, cfg.train.warmup_min_steps) == ("wsd", 0.0, 10)
    cosine = load_design("isoflop", sets=["lr_schedule=cosine", "warmup_steps=4"])
    assert not cosine.shares_trunks  # share_trunks applies to WSD only
    cfg = compose(cosine.run_overrides() + ["train.flops_budget=1e9"])
    assert (cfg.train.lr_schedule, cfg.train.warmup_min_steps) == ("cosine", 4)
