"""`llada bench`: one table of this machine's throughput, every row measured in this process, written as JSON.

Rows (`ROWS`, in order; each is one function returning its numbers, and a row that fails says why):
- train: tokens/s of `llada train` (Lightning) against the bare loop on the same model and data (bench/train.py);
- CPU MFU: the same steps' model FLOPs (the `full` convention) per second over an fp32 matmul measured in this run;
- loader, loader (prepared): tokens/s delivered by `LMDataModule`'s training loader (num_workers 0), from the
  tokenised corpus cache and from a set written by `llada data prepare` (data.source=tokens);
- sampler / likelihood overhead: wall time of `sampling.generate` and `likelihood.log_likelihood` over the time
  spent inside the model's forward passes alone (forward hooks): 1.0 means no overhead;
- sweep launch: expanding, checking and planning a 100-run spec (dry run), then submitting it to the local
  executor (runs cancelled at once: nothing trains), as benchmarks/bench_sweep.py does against Slurm;
- fit: the Approach-3 fit of benchmarks/bench_fit.py (Chinchilla's law, noisy synthetic points);
- torch.compile: `train.compile=true` through `llada train`: the first step (compilation) and the median step
  against eager (full mode only: compiling takes about half a minute on a 2-core CPU).

`--quick` shrinks every row (tiny model, few steps, fewer fit starts) to run in well under a minute.
"""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """One measured quantity: `value` in `unit`, with what it was measured on in `detail`; `error` if it failed."""

    name: str
    metric: str
    value: float | None = None
    unit: str = ""
    detail: str = ""
    seconds: float = 0.0  # how long measuring it took
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Settings:
    quick: bool
    threads: int

    @property
    def train_overrides(self) -> list[str]:
        if self.quick:
            return ["model=cpu-0.1m", "data.seq_len=64", "train.batch_size=8", "data.max_documents=40", *_QUIET]
        return ["model=cpu-3.5m", "data.seq_len=128", "train.batch_size=16", *_QUIET]


_QUIET = ["train.val_every_n_steps=0", "train.progress_bar=false", "objective=llada"]


def _fmt(x: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


# -- rows --------------------------------------------------------------------------------------------------
def train_rows(s: Settings) -> list[Row]:
    from llada_lightning.bench.train import compare_training

    rounds, steps = (1, 8) if s.quick else (3, 30)
    r = compare_training(s.train_overrides, s.threads, rounds, steps)
    where = f"{r['shape']}, {s.threads} thread(s), {rounds} x {steps} steps each, alternating"
    return [
        Row(
            "train",
            "llada train tokens/s",
            r["light_tokens_per_s"],
            "tok/s",
            f"bare loop {_fmt(r['bare_tokens_per_s'])} tok/s, ratio bare/train {r['ratio']:.3f}; {where}",
            extra=r,
        ),
        Row(
            "CPU MFU",
            "llada train MFU",
            r["mfu_light"],
            "fraction",
            f"bare loop {100 * r['mfu_bare']:.1f}%; full-convention FLOPs over a 1024^3 fp32 matmul measured here "
            f"({r['peak'] / 1e9:.1f} GFLOP/s, {s.threads} thread(s))",
            extra={"peak_flops": r["peak"], "mfu_bare": r["mfu_bare"]},
        ),
    ]


def _loader_tokens_per_s(dm: Any, seconds: float) -> tuple[float, int]:
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    for _ in range(5):
        next(it)
    n = batches = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += next(it).numel()
        batches += 1
    return n / (time.perf_counter() - start), batches


def loader_rows(s: Settings) -> list[Row]:
    from llada_lightning.config.compose import compose
    from llada_lightning.data.datamodule import LMDataModule

    cfg = compose(s.train_overrides)
    seconds = 0.5 if s.quick else 3.0
    batch, seq = cfg.train.batch_size, cfg.data.seq_len
    dm = LMDataModule(cfg.data, batch_size=batch, seed=0, val_batches=1)
    dm.prepare_data()
    rate, batches = _loader_tokens_per_s(dm, seconds)
    rows = [Row("loader", "tokens/s", rate, "tok/s", f"embedded corpus cache, {batches} batches of {batch}x{seq}")]
    rows.append(_prepared_loader_row(dm, cfg, seconds))
    return rows


def _prepared_loader_row(dm: Any, cfg: Any, seconds: float) -> Row:
    """The loader over a set written by `llada data prepare` (data.source=tokens), when the package has it."""
    try:
        from llada_lightning.data.prepare import PrepareOptions, prepare
    except ImportError:
        return Row("loader (prepared)", "tokens/s", error="this package has no `llada data prepare`")
    from llada_lightning.config.schema import DataConfig
    from llada_lightning.data.corpus import iter_documents
    from llada_lightning.data.datamodule import LMDataModule

    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs.jsonl"
        with open(docs, "w") as f:
            for doc in iter_documents(cfg.data):
                f.write(json.dumps({"text": doc}) + "\n")
        out = Path(tmp) / "prepared"
        prepare(PrepareOptions([str(docs)], str(out), tokenizer=str(dm.tokenizer_path)), echo=lambda line: None)
        data = DataConfig(source="tokens", paths=[str(out)], seq_len=cfg.data.seq_len)
        rate, batches = _loader_tokens_per_s(
            LMDataModule(data, batch_size=cfg.train.batch_size, seed=0, val_batches=1), seconds
        )
    return Row(
        "loader (prepared)",
        "tokens/s",
        rate,
        "tok/s",
        f"`llada data prepare` shards, {batches} batches of {cfg.train.batch_size}x{cfg.data.seq_len}",
    )


class ForwardClock:
    """Seconds spent inside a module's forward calls (pre/post forward hooks)."""

    def __init__(self, module: Any) -> None:
        self.seconds, self.calls, self._t = 0.0, 0, 0.0
        self._handles = [
            module.register_forward_pre_hook(lambda *a: self._start()),
            module.register_forward_hook(lambda *a: self._stop()),
        ]

    def _start(self) -> None:
        self._t = time.perf_counter()

    def _stop(self) -> None:
        self.seconds += time.perf_counter() - self._t
        self.calls += 1

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _overhead(model: Any, fn: Callable[[], Any], repeats: int) -> tuple[float, float, int]:
    """(wall / forward time, wall seconds, forward calls) of `fn`, medians over `repeats` after a warm-up."""
    fn()
    ratios, walls, calls = [], [], 0
    for _ in range(repeats):
        clock = ForwardClock(model)
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
        clock.remove()
        ratios.append(wall / clock.seconds)
        walls.append(wall)
        calls = clock.calls
    return statistics.median(ratios), statistics.median(walls), calls


def sampling_rows(s: Settings) -> list[Row]:
    import torch

    from llada_lightning.config import ModelConfig
    from llada_lightning.likelihood import log_likelihood
    from llada_lightning.models import build_model
    from llada_lightning.sampling import generate

    cfg = ModelConfig(n_layers=2, n_heads=4, n_kv_heads=4, d_model=128, d_ff=384, vocab_size=64, max_seq_len=512)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    batch, prompt_len, gen = (4, 32, 32) if s.quick else (8, 64, 128)
    repeats = 1 if s.quick else 5
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, 64, (batch, prompt_len), generator=g)

    def sample() -> Any:
        return generate(model, prompts, gen_length=gen, steps=gen, block_length=32, mask_id=cfg.mask_id)

    ratio, wall, calls = _overhead(model, sample, repeats)
    rows = [
        Row(
            "sampler overhead",
            "wall / forward time",
            ratio,
            "x",
            f"generate (greedy, one token per step, no cache): {calls} forwards of {batch}x{prompt_len + gen}, "
            f"{batch * gen / wall:.0f} tok/s",
        )
    ]
    mc = 32 if s.quick else 128
    answer = torch.randint(0, 64, (16,), generator=g)

    def likelihood() -> Any:
        return log_likelihood(model, prompts[0], answer, mask_id=cfg.mask_id, mc_num=mc, batch_size=32, generator=g)

    ratio, wall, calls = _overhead(model, likelihood, repeats)
    rows.append(
        Row(
            "likelihood overhead",
            "wall / forward time",
            ratio,
            "x",
            f"log_likelihood, mc_num {mc}, batch 32: {calls} forwards of 32x{prompt_len + 16}, {wall * 1e3:.0f} ms",
        )
    )
    return rows


# 100 runs of the CPU ladder (benchmarks/bench_sweep.py submits the same spec to the local Slurm cluster)
SWEEP_SPEC = """name: bench100
root: {root}
cluster: {cluster}
base: [data.seq_len=32, train.batch_size=4, train.max_steps=null]
grid:
  objective: [llada, arm]
  model: [cpu-0.1m, cpu-0.4m, cpu-1m, cpu-1.6m, cpu-3.5m]
  train.flops_budget: [1e12, 2e12, 4e12, 8e12, 16e12]
  train.seed: [0, 1]
"""


def sweep_rows(s: Settings) -> list[Row]:
    from llada_lightning import rundir
    from llada_lightning.sweep import cancel, launch

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "bench100.yaml"
        spec.write_text(SWEEP_SPEC.format(root=tmp, cluster="local"))
        t0 = time.perf_counter()
        report = launch(str(spec), dry_run=True, out=io.StringIO())
        t1 = time.perf_counter()
        submitted = launch(str(spec), executor="local", out=io.StringIO())
        t2 = time.perf_counter()
        worker = (rundir.read_record(rundir.job_path(report.runs[0].run_dir)) or {}).get("worker_pid")
        cancel(str(spec), out=io.StringIO())  # the worker starts no cancelled run: nothing trains
        if worker:
            _stop(int(worker))
    n = len(report.runs)
    assert n == 100 and len(submitted.submitted) == 100, (n, len(submitted.submitted))
    return [
        Row(
            "sweep launch",
            "dry run + local submission",
            t2 - t0,
            "s",
            f"{n} runs: dry run {t1 - t0:.2f} s (expand, state, plan), submission {t2 - t1:.2f} s (local executor)",
            extra={"dry_run_s": t1 - t0, "submit_s": t2 - t1},
        )
    ]


def _stop(pid: int) -> None:
    """End the local worker this process started (every run it holds is cancelled) and reap it."""
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def fit_rows(s: Settings) -> list[Row]:
    import numpy as np

    from llada_lightning.scaling import fit_parametric
    from llada_lightning.scaling.parametric import start_grid
    from llada_lightning.scaling.study import COARSE_STARTS

    truth = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Hoffmann et al. 2022, eq. 10
    points = 60 if s.quick else 250
    rng = np.random.default_rng(0)
    nn, dd = 10 ** rng.uniform(7, 11, points), 10 ** rng.uniform(8, 13, points)
    loss = (truth["E"] + truth["A"] / nn ** truth["alpha"] + truth["B"] / dd ** truth["beta"]) * np.exp(
        rng.normal(0, 0.003, points)
    )
    starts = COARSE_STARTS if s.quick else None
    workers = 1 if s.quick else min(2, os.cpu_count() or 1)
    start = time.perf_counter()
    fit = fit_parametric(nn, dd, loss, starts=starts, workers=workers)
    wall = time.perf_counter() - start
    n_starts = len(starts) if starts is not None else len(start_grid())
    alpha = fit.params()["alpha"]
    return [
        Row(
            "fit",
            "Approach-3 fit wall time",
            wall,
            "s",
            f"{points} points, {n_starts} L-BFGS-B starts, {workers} worker(s); alpha {alpha:.3f} (truth 0.34)",
        )
    ]


def compile_rows(s: Settings) -> list[Row]:
    if s.quick:
        return [Row("torch.compile", "median step", error="skipped in --quick (compiling takes ~30 s here)")]
    from llada_lightning.bench.train import lightning_timer

    # a random-length step changes the shape and recompiles (once, into a dynamic-length graph): off for both paths,
    # so the steady state is timed
    overrides = [*s.train_overrides, "objective.random_length_prob=0"]
    steps = 20
    with tempfile.TemporaryDirectory() as tmp:
        eager = lightning_timer(overrides, steps, Path(tmp) / "eager")
        try:
            compiled = lightning_timer([*overrides, "train.compile=true"], steps, Path(tmp) / "compiled")
        except Exception as exc:  # noqa: BLE001 - the row says why compiling fails on this machine
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            return [Row("torch.compile", "median step", error=f"{type(exc).__name__}: {first}")]

    def median_step(timer: Any) -> float:
        return statistics.median(b - a for a, b in zip(timer.stamps[1:], timer.stamps[2:], strict=False))

    first = compiled.stamps[0] - compiled.start
    eager_ms, compiled_ms = 1e3 * median_step(eager), 1e3 * median_step(compiled)
    return [
        Row(
            "torch.compile",
            "median step (train.compile=true)",
            compiled_ms,
            "ms",
            f"eager {eager_ms:.1f} ms ({eager_ms / compiled_ms:.2f}x); first step (compiling) {first:.1f} s; "
            f"{steps} steps, random-length steps off",
            extra={"eager_ms": eager_ms, "first_step_s": first},
        )
    ]


ROWS: tuple[tuple[str, Callable[[Settings], list[Row]]], ...] = (
    ("train", train_rows),
    ("loader", loader_rows),
    ("sampling", sampling_rows),
    ("sweep launch", sweep_rows),
    ("fit", fit_rows),
    ("torch.compile", compile_rows),
)
ROW_NAMES = (
    "train",
    "CPU MFU",
    "loader",
    "loader (prepared)",
    "sampler overhead",
    "likelihood overhead",
    "sweep launch",
    "fit",
    "torch.compile",
)


def machine(threads: int) -> str:
    import torch

    return (
        f"{platform.machine()}, {os.cpu_count()} CPU(s), {threads} torch thread(s), torch {torch.__version__}, "
        f"Python {platform.python_version()}"
    )


def run(quick: bool, threads: int | None = None, echo: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Every row, with `threads` torch threads (default: 1 with `quick`, steady on a shared CPU, else torch's
    default); a group that raises gives rows with the error, and the others still run."""
    import torch

    from llada_lightning.training.quiet import quiet_lightning

    quiet_lightning()
    previous = torch.get_num_threads()
    settings = Settings(quick=quick, threads=threads or (1 if quick else previous))
    torch.set_num_threads(settings.threads)
    try:
        rows = _rows(settings, echo)
    finally:
        torch.set_num_threads(previous)
    return {
        "machine": machine(settings.threads),
        "mode": "quick" if quick else "full",
        "threads": settings.threads,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": _git_head(),
        "rows": [asdict(r) for r in rows],
    }


def _rows(settings: Settings, echo: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    for group, fn in ROWS:
        echo(f"bench: {group} ...")
        start = time.perf_counter()
        try:
            got = fn(settings)
        except Exception as exc:  # noqa: BLE001 - one failing measurement must not hide the others
            message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
            echo("".join(traceback.format_exception(exc))[-2000:])
            got = [Row(name, "", error=message) for name in _names_of(group)]
        for row in got:
            row.seconds = row.seconds or (time.perf_counter() - start) / len(got)
        rows.extend(got)
    return rows


def _names_of(group: str) -> tuple[str, ...]:
    return {
        "train": ("train", "CPU MFU"),
        "loader": ("loader", "loader (prepared)"),
        "sampling": ("sampler overhead", "likelihood overhead"),
    }.get(group, (group,))


def _git_head() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _value(row: dict[str, Any]) -> str:
    if row["error"]:
        return "-"
    value, unit = row["value"], row["unit"]
    if unit == "fraction":
        return f"{100 * value:.1f}%"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "tok/s":
        return f"{_fmt(value)} tok/s"
    return f"{value:.3g} {unit}"


def table(result: dict[str, Any]) -> str:
    lines = [f"llada bench ({result['mode']}): {result['machine']}"]
    lines.append(f"{'row':<20} {'metric':<33} {'value':>13}  detail")
    for row in result["rows"]:
        detail = f"({row['error']})" if row["error"] else row["detail"]
        lines.append(f"{row['name']:<20} {row['metric']:<33} {_value(row):>13}  {detail}")
    return "\n".join(lines)


def default_out(quick: bool) -> Path:
    return Path("runs") / "bench" / f"bench-{'quick' if quick else 'full'}-{time.strftime('%Y%m%d-%H%M%S')}.json"


def main(quick: bool, out: str | None, threads: int | None = None) -> int:
    from llada_lightning.io import atomic_write_json

    result = run(quick, threads, echo=lambda line: print(line, file=sys.stderr, flush=True))
    print(table(result))
    path = Path(out) if out else default_out(quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result)
    print(f"written: {path}")
    return 0
