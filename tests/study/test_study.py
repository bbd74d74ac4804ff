"""A study end to end on tiny runs (submitit's in-process debug executor): waves of budgets placed in order, the
record that makes a relaunch do nothing, a changed design refused, `--status` and `--dry-run` tables."""

from __future__ import annotations

import io
import json

import pytest

from llada_lightning.config.errors import ConfigError
from llada_lightning.study.cli import dry_run
from llada_lightning.study.design import cell_key, load_design
from llada_lightning.study.study import RECORD, SPEC, Study

TINY = [
    "budgets=[4e6, 1.2e7, 4e7]",
    "widths=[8, 12, 16, 24]",
    "sizes_per_budget=3",
    "objectives=[arm]",
    "seeds=[0]",
    "first_centre=12",
    "base=[model=cpu-0.1m, data.seq_len=16, train.batch_size=2, train.val_every_n_steps=0, train.val_batches=1, "
    "train.progress_bar=false, model.vocab_size=4096]",
]


def tiny_study(tmp_path, *extra: str) -> Study:
    return Study(load_design("isoflop", sets=[*TINY, *extra]), tmp_path, executor="debug", stream=io.StringIO())


@pytest.mark.slow
def test_waves_are_placed_in_order_and_a_relaunch_does_nothing(tmp_path):
    study = tiny_study(tmp_path)
    runs, states = study.launch()
    record = json.loads((study.directory / RECORD).read_text())
    assert set(record["windows"]) == {cell_key("arm", b) for b in (4e6, 1.2e7, 4e7)}
    assert record["windows"][cell_key("arm", 4e6)] == [8, 12, 16]  # centred on first_centre
    assert len(runs) == 9 and all(states[r.signature].state == "done" for r in runs)
    assert len(list(study.directory.glob("*/result.json"))) == 9
    # every later budget was placed from the finished smaller ones, and says how
    assert sum("centred on N*=" in n for n in record["notes"]) == 2
    spec = (study.directory / SPEC).read_text()
    assert "arm" in spec and "flops_budget" in spec  # the sweep spec of every placed run, for `llada sweep`

    again = tiny_study(tmp_path)
    runs2, _ = again.launch()
    assert "submitted 0 (debug), skipped 9" in again.stream.getvalue()
    assert {r.signature for r in runs2} == {r.signature for r in runs}
    assert json.loads((study.directory / RECORD).read_text())["windows"] == record["windows"]

    status = io.StringIO()
    table = Study(again.design, tmp_path, stream=status).status()
    assert all(row["done"] == row["expected"] == 3 for row in table.values())
    assert "finished: 9 of 9 expected runs" in status.getvalue()

    with pytest.raises(ConfigError, match="holds a study of another design \\(differs in widths\\)"):
        tiny_study(tmp_path, "widths=[8, 12, 16, 32]").launch()


def test_dry_run_lists_every_run_with_its_compute_and_marks_waiting_cells(tmp_path):
    study = tiny_study(tmp_path)
    out = io.StringIO()
    planned = dry_run(study, measure=False, out=out)
    assert len(planned) == 9  # 3 placed (the first budget) + 6 provisional
    assert sum(p.placed for p in planned) == 3
    for p in planned:
        budget = p.run.cfg.train.flops_budget
        assert p.run.flops("6N") <= budget and p.run.flops("6N") > 0.5 * budget  # steps floor the budget
        assert p.run.flops("full") > p.run.flops("6N")
    text = out.getvalue()
    assert "C(6N)" in text and "C(full)" in text and "D/N" in text and "6 runs are provisional" in text
    assert not (study.directory / RECORD).exists()  # a dry run writes nothing


def test_dry_run_estimates_wall_time_from_measured_steps(tmp_path):
    out = io.StringIO()
    dry_run(tiny_study(tmp_path), measure=True, out=out)
    assert "wall with 2 at once" in out.getvalue()


@pytest.mark.slow
def test_report_of_a_study_under_a_relative_out_covers_its_runs(tmp_path, monkeypatch):
    """`llada study` defaults to the relative `runs/study`: the report must still recognise the study's runs."""
    from pathlib import Path

    from llada_lightning.study.report import report

    monkeypatch.chdir(tmp_path)
    study = Study(load_design("isoflop", sets=TINY), Path("runs/study"), executor="debug", stream=io.StringIO())
    runs, _ = study.launch()
    out = io.StringIO()
    fit, files = report(study.directory, runs, n_bootstrap=0, parametric=False, stream=out)
    assert "ignored" not in out.getvalue()
    assert fit["n_runs"] == 9 and files["fit"].is_file()
    assert len(fit["flop_conventions"]["cells"]) == 3  # every budget, both conventions side by side


def test_dry_run_estimates_gpu_hours_from_the_full_convention_compute(tmp_path):
    from llada_lightning.study.timing import STARTUP_S, accelerator_estimate

    study = tiny_study(tmp_path, "share_trunks=false")
    out = io.StringIO()
    planned = dry_run(study, out=out, gpu_flops=1e6, mfu=0.5)  # a slow accelerator, so hours are visible
    runs = [p.run for p in planned]
    est = accelerator_estimate(runs, peak_flops=1e6, mfu=0.5)
    for run in runs:
        assert est[run.signature] == pytest.approx(run.flops("full") / 5e5 + STARTUP_S)
    total = sum(est.values()) / 3600
    assert f"estimated {total:,.0f} GPU-hours at 50% MFU of 1e+06 FLOP/s per GPU" in out.getvalue()
