"""`llada sweep cancel|status`: overrides vs filter, runs found in the sweep directory, cancelled runs relaunch."""

from __future__ import annotations

import io
import json
from pathlib import Path

from tiny_specs import fake_queued, write_spec

from llada_lightning.cli import main
from llada_lightning.sweep.launch import plan
from llada_lightning.sweep.manage import status_table
from llada_lightning.sweep.spec import expand, load_spec
from llada_lightning.sweep.state import RunStatus

LR = "train.lr=2e-3"  # not the default: another signature


def _job(run) -> dict:
    return json.loads((run.run_dir / "job.json").read_text())


def test_cancel_reads_key_value_tokens_as_overrides_not_as_the_filter(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path)
    runs = fake_queued(spec, [f"root={tmp_path}", LR])
    assert main(["sweep", "cancel", spec, f"root={tmp_path}", LR]) == 0
    out = capsys.readouterr().out
    assert all(f"cancelled {r.name} (local-1)" in out for r in runs), out
    assert all(_job(r).get("cancelled") and "worker_pid" not in _job(r) for r in runs)


def test_cancel_filter_as_option_or_bare_word(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path)
    llada, arm = fake_queued(spec, [f"root={tmp_path}", LR])
    assert main(["sweep", "cancel", spec, f"root={tmp_path}", "--filter", "arm-", LR]) == 0
    assert _job(arm).get("cancelled") and not _job(llada).get("cancelled")
    assert main(["sweep", "cancel", spec, "llada-", f"root={tmp_path}", LR]) == 0  # the old positional form
    assert _job(llada).get("cancelled")
    assert "cancelled llada-c0.1m" in capsys.readouterr().out


def test_cancel_filter_matching_no_run_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path)
    runs = fake_queued(spec, [f"root={tmp_path}"])
    assert main(["sweep", "cancel", spec, f"root={tmp_path}", "--filter", "zzz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("llada: config error:"), err
    assert "'zzz'" in err and f"llada sweep status {spec} root={tmp_path}" in err
    assert not any(_job(r).get("cancelled") for r in runs)
    assert main(["sweep", "cancel", spec, "arm-", "llada-", f"root={tmp_path}"]) == 2
    assert "2 filters given" in capsys.readouterr().err


def test_status_and_cancel_find_runs_launched_with_other_overrides(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path)
    launched = fake_queued(spec, [f"root={tmp_path}", LR])
    plain = expand(load_spec(spec, [f"root={tmp_path}"]))
    out = io.StringIO()
    states = status_table(spec, [f"root={tmp_path}"], out=out)
    assert {states[r.signature].state for r in launched} == {"queued"}
    assert {states[r.signature].state for r in plain} == {"pending"}  # the spec's own runs: never launched
    assert "the last 2 run(s) were found in" in out.getvalue()
    assert main(["sweep", "cancel", spec, f"root={tmp_path}"]) == 0  # without the launch's override
    assert all(_job(r).get("cancelled") for r in launched)
    assert capsys.readouterr().out.count("cancelled ") == 2


def test_cancel_on_a_sweep_never_launched_writes_nothing(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path)
    assert main(["sweep", "cancel", spec, f"root={tmp_path}"]) == 0
    assert "nothing to cancel" in capsys.readouterr().out
    assert not (tmp_path / "two").exists()


def test_plan_relaunches_cancelled_runs(tmp_path: Path) -> None:
    runs = expand(load_spec(write_spec(tmp_path)))
    actions = plan(runs, {r.signature: RunStatus(state="cancelled") for r in runs})
    assert set(actions.values()) == {"submit (cancelled)"}


def test_dry_run_warns_once_per_run_that_will_not_fit_the_clusters_gpus(tmp_path: Path, capsys) -> None:
    grid = "  model: [smdm-6m, smdm-1028m]\n  data.seq_len: [2048]\n  train.batch_size: [16]"
    spec = write_spec(tmp_path, grid=grid, name="big")
    gpus = ["cluster.gpus_per_node=8", "train.devices=8", "train.precision=bf16-mixed"]
    assert main(["sweep", "launch", spec, "--dry-run", f"root={tmp_path}", *gpus]) == 0
    assert "warning" not in capsys.readouterr().out  # no cluster.gpu_memory_gb: no check
    assert main(["sweep", "launch", spec, "--dry-run", f"root={tmp_path}", *gpus, "cluster.gpu_memory_gb=80"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "llada-m1028" in warnings[0] and "of 80 GB" in warnings[0], warnings
    assert "fits with train.batch_size=8 train.accumulate_grad_batches=2" in warnings[0]
    assert not (tmp_path / "big").exists() or not any((tmp_path / "big").glob("*/job.json"))  # nothing submitted
