"""The local worker never starts a run cancelled (or relaunched elsewhere) after its queue was written."""

from __future__ import annotations

import json
from pathlib import Path

from llada_lightning.sweep.local_worker import main


def _queued(sweep_dir: Path, name: str, job: dict | None) -> dict:
    run_dir = sweep_dir / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("{}\n")
    if job is not None:
        (run_dir / "job.json").write_text(json.dumps(job))
    return {"run_dir": str(run_dir), "record": {"executor": "local", "job_id": "local-1", "name": name}}


def test_worker_skips_cancelled_relaunched_and_removed_runs(tmp_path: Path, capsys) -> None:
    sweep_dir = tmp_path / "sweep"
    runs = [
        _queued(sweep_dir, "cancelled", {"executor": "local", "job_id": "local-1", "cancelled": 1.0}),
        _queued(sweep_dir, "relaunched", {"executor": "local", "job_id": "local-2", "worker_pid": 1}),
        _queued(sweep_dir, "removed", None),
    ]
    queue = sweep_dir / ".local" / "queue-1.json"
    queue.parent.mkdir()
    queue.write_text(json.dumps({"parallel": 1, "runs": runs, "lock": str(sweep_dir / ".launch.lock")}))
    assert main([str(queue)]) == 0
    for run in runs:
        run_dir = Path(run["run_dir"])
        assert not (run_dir / "job.log").exists()  # never started
        job = json.loads((run_dir / "job.json").read_text()) if (run_dir / "job.json").exists() else {}
        assert "pid" not in job
    out = capsys.readouterr().out
    assert "cancelled: not started: cancelled" in out
    assert "relaunched: not started: taken over by job local-2" in out
    assert "removed: not started: its job.json is gone" in out


def _tiny_run(sweep_dir: Path, name: str, overrides: list[str]) -> dict:
    from llada_lightning.config.compose import compose, to_yaml

    run_dir = sweep_dir / name
    cfg = compose(
        [
            "model=cpu-0.1m",
            "data.seq_len=32",
            "train.batch_size=4",
            "train.max_steps=3",
            "train.val_every_n_steps=0",
            "train.val_batches=1",
            "train.progress_bar=false",
            f"run_dir={run_dir}",
            *overrides,
        ]
    )
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    record = {"executor": "local", "job_id": "local-1", "name": name}
    (run_dir / "job.json").write_text(json.dumps(record))
    return {"run_dir": str(run_dir), "record": record}


def _queue(sweep_dir: Path, runs: list[dict]) -> str:
    queue = sweep_dir / ".local" / "queue-1.json"
    queue.parent.mkdir(parents=True, exist_ok=True)
    payload = {"parallel": 2, "torch_threads": 1, "runs": runs, "lock": str(sweep_dir / ".launch.lock")}
    queue.write_text(json.dumps(payload))
    return str(queue)


def test_forked_runs_equal_runs_in_a_fresh_interpreter(tmp_path: Path, monkeypatch) -> None:
    """The preloaded worker forks each run: its result is the one a fresh `python -m ...sweep.job` gives."""
    results = {}
    for mode in ("1", "0"):  # LLADA_WORKER_FORK: fork from the worker, or a fresh interpreter per run
        monkeypatch.setenv("LLADA_WORKER_FORK", mode)
        sweep_dir = tmp_path / f"fork{mode}"
        runs = [_tiny_run(sweep_dir, "llada", ["objective=llada"]), _tiny_run(sweep_dir, "arm", ["objective=arm"])]
        assert main([_queue(sweep_dir, runs)]) == 0
        for run in runs:
            run_dir = Path(run["run_dir"])
            job = json.loads((run_dir / "job.json").read_text())
            assert job["pid"] > 0 and job["log"].endswith("job.log")
            assert "llada train: " in (run_dir / "job.log").read_text()  # its output went to its own log
            res = json.loads((run_dir / "result.json").read_text())
            results[(mode, run_dir.name)] = {k: res[k] for k in ("status", "steps", "tokens", "val_loss", "flops_full")}
    for name in ("llada", "arm"):
        assert results[("1", name)]["status"] == "done"
        assert results[("1", name)] == results[("0", name)]


def test_a_failing_forked_run_is_counted_and_recorded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LLADA_WORKER_FORK", "1")
    sweep_dir = tmp_path / "sweep"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a few words of text\n" * 50)
    bad = _tiny_run(sweep_dir, "bad", ["data=hf-text", f"data.data_files=[{corpus}]", "data.vocab_size=300"])
    corpus.unlink()  # gone by the time the run starts: it fails inside the forked child
    good = _tiny_run(sweep_dir, "good", [])
    assert main([_queue(sweep_dir, [bad, good])]) == 1  # one run failed
    failed = json.loads((Path(bad["run_dir"]) / "result.json").read_text())
    assert failed["status"] == "failed" and failed["error"]
    assert json.loads((Path(good["run_dir"]) / "result.json").read_text())["status"] == "done"
