"""The run directory: its one-owner lock, its typed result record, `llada runs` and `llada --version`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llada_lightning import __version__, rundir
from llada_lightning.cli import main
from llada_lightning.rundir import RunDirBusy, RunLock, RunResult

TINY = ["model=cpu-0.1m", "data.seq_len=32", "train.batch_size=4", "train.max_steps=2", "train.progress_bar=false"]


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """A separate process that takes the run's lock and sleeps until killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from llada_lightning.rundir import RunLock
        RunLock({str(run_dir)!r}).acquire()
        print("held", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_process_is_refused_naming_the_holder_and_the_lock_never_goes_stale(tmp_path: Path) -> None:
    holder = hold_lock(tmp_path)
    try:
        assert RunLock(tmp_path).is_held()
        with pytest.raises(RunDirBusy, match=rf"in use by pid {holder.pid} on "):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without any clean-up: the kernel drops the flock
        holder.wait()
    assert not RunLock(tmp_path).is_held()
    with RunLock(tmp_path) as lock:
        assert lock.is_held()
        assert json.loads((tmp_path / rundir.LOCK).read_text())["pid"] == os.getpid()
    assert not RunLock(tmp_path).is_held()


def test_llada_train_on_a_busy_run_dir_exits_non_zero_and_touches_nothing(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    holder = hold_lock(run_dir)
    try:
        code = main(["train", *TINY, f"run_dir={run_dir}"])
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 73
    assert len(err) == 1 and f"pid {holder.pid}" in err[0] and str(run_dir) in err[0]
    assert sorted(p.name for p in run_dir.iterdir()) == [rundir.LOCK]  # no config, checkpoint or result written
    assert main(["train", *TINY, f"run_dir={run_dir}"]) == 0  # the holder died: the directory is free again
    assert rundir.read_result(run_dir).done


def test_result_record_round_trips_and_keeps_unknown_keys(tmp_path: Path) -> None:
    record = {"status": "done", "val_loss": 3.5, "val_bpb": None, "N_nonemb": 10, "run_dir": str(tmp_path), "future": 1}
    (tmp_path / rundir.RESULT).write_text(json.dumps(record))
    result = rundir.read_result(tmp_path)
    assert isinstance(result, RunResult) and result.done and result.val_loss == 3.5 and result.N_nonemb == 10
    assert result["future"] == 1 and result.get("tokens") is None and "tokens" not in result
    assert result == record and dict(result) == record  # a Mapping equal to its JSON record
    with pytest.raises(KeyError):
        result["tokens"]
    rundir.write_result(tmp_path, result)
    assert json.loads((tmp_path / rundir.RESULT).read_text()) == record
    (tmp_path / rundir.RESULT).write_text("{not json")
    assert rundir.read_result(tmp_path) is None


def test_find_run_dirs_does_not_descend_into_runs(tmp_path: Path) -> None:
    for name in ("a", "sweep/b", "sweep/c"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / rundir.CONFIG).write_text("model:\n  name: x\n")
    (tmp_path / "a" / "checkpoints").mkdir()
    (tmp_path / "a" / "checkpoints" / rundir.CONFIG).write_text("")  # inside a run: not another run
    (tmp_path / "empty").mkdir()
    assert [p.relative_to(tmp_path).as_posix() for p in rundir.find_run_dirs(tmp_path)] == ["a", "sweep/b", "sweep/c"]


def test_llada_runs_lists_status_objective_n_tokens_flops_loss(tmp_path: Path, capsys) -> None:
    assert main(["train", *TINY, f"runs_root={tmp_path}"]) == 0
    done = rundir.read_result(next(tmp_path.iterdir()))
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / rundir.CONFIG).write_text("objective:\n  name: arm\nmodel:\n  name: cpu-1m\n")
    (stopped / rundir.PROGRESS).write_text(json.dumps({"step": 5, "total": 40, "val/loss": 6.5}))
    failed = tmp_path / "failed"
    failed.mkdir()
    rundir.write_result(failed, RunResult(status="failed", error="ValueError: x"))
    capsys.readouterr()
    assert main(["runs", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == [
        "run",
        "status",
        "objective",
        "model",
        "steps",
        "N",
        "tokens",
        "FLOPs",
        "conv",
        "val_loss",
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    name = Path(done["run_dir"]).name
    assert rows[name][1:5] == ["done", "llada", "cpu-0.1m", "2"]
    assert rows[name][5] == f"{done['N_nonemb']:,d}" and float(rows[name][6]) == pytest.approx(done["tokens"], rel=1e-2)
    assert float(rows[name][7]) == pytest.approx(done["flops_6N"], rel=1e-2) and rows[name][8] == "6N"
    assert float(rows[name][9]) == pytest.approx(done["val_loss"], abs=1e-4)
    assert rows["stopped"][1:5] == ["stopped", "arm", "cpu-1m", "5/40"] and rows["stopped"][-1] == "6.5000"
    assert rows["failed"][1] == "failed"


def test_llada_runs_on_a_missing_root_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["runs", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such directory" in err[0]


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"llada-lightning {__version__}"
