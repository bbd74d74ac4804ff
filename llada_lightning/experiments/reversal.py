"""`llada experiment reversal`: does masked diffusion escape the reversal curse at matched compute?

For each seed s: a fact set drawn from s (facts.py) is written as a text corpus; LLaDA and the ARM are trained on it
through the normal pre-training path (`compose` + `training.run.train`) with the same model, data, batch and steps
(same tokens, hence the same 6N FLOPs: C = 6 N D for both objectives, flops.py) and training seed s; each run
then answers every question greedily (scoring.py) and the accuracies are aggregated over seeds (report.py).

Layout of OUT: `data/` (the corpora), `cache/` (their tokenised arrays), `runs/` (run directories: a run whose
result.json says done is reused), `eval/` (each run's answers, reused when they match), and the outputs
`reversal.csv`, `reversal.json`, `summary.txt`, `reversal.png` / `.pdf`. Nothing existing is deleted.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.experiments.facts import FactSet, make_facts, write_corpus
from llada_lightning.io import atomic_write_json

OBJECTIVES = ("llada", "arm")
VAL_FRACTION = 0.1  # the hash threshold of the val split (cache.py); facts.py keeps every training fact above it
EVAL_VERSION = 2  # bump when scoring changes: stored answers of an older version are recomputed


@dataclass(frozen=True)
class Preset:
    """Everything that sizes the experiment: the fact set, the corpus, the model and the training run."""

    name: str
    n_test: int  # forward-only pairs (the reversal test: Berglund et al. 2023, Exp. 1, NameToDescription)
    n_both: int  # pairs stated both ways (Berglund's "Both" subset: teaches the reversed phrasing)
    n_filler: int  # validation-only pairs
    repeats: int  # passes over the training facts written into the corpus, each in its own order
    val_repeats: int
    n_layers: int
    n_heads: int
    d_model: int
    vocab_size: int
    seq_len: int
    batch_size: int
    steps: int
    lr: float
    seeds: int


# The smoke test: a handful of facts, a 2-layer d=32 model, a minute on 2 cores.
QUICK = Preset(
    "quick", n_test=6, n_both=6, n_filler=4, repeats=8, val_repeats=4, n_layers=2, n_heads=2, d_model=32,
    vocab_size=320, seq_len=32, batch_size=16, steps=120, lr=3e-3, seeds=1,
)  # fmt: skip
# The measured experiment. Model, steps and lr tuned on forward accuracy only, seed 0 (README.md, "Tuning"); lr 3e-3
# is also the CPU recipe's (configs/train/cpu.yaml). Batch 16 x 64-token blocks as the CPU studies (experiments/).
FULL = Preset(
    "full", n_test=30, n_both=30, n_filler=16, repeats=20, val_repeats=4, n_layers=2, n_heads=4, d_model=128,
    vocab_size=512, seq_len=64, batch_size=16, steps=2000, lr=3e-3, seeds=3,
)  # fmt: skip
PRESETS = {"quick": QUICK, "full": FULL}


def run_overrides(p: Preset, objective: str, seed: int, corpus: Path, out: Path) -> list[str]:
    """The `compose` overrides of one run: identical for both objectives but for `objective=`."""
    return [
        f"objective={objective}",  # LLaDA: configs/objective/llada.yaml (Nie et al. 2025 eq. 3); ARM: next token
        "data.source=hf",
        "data.path=text",  # one document a line (datasets' `text` builder)
        f"data.data_files=[{corpus}]",
        f"data.val_fraction={VAL_FRACTION}",
        f"data.vocab_size={p.vocab_size}",  # byte-level BPE trained on the training facts (data/tokenizer.py)
        f"data.seq_len={p.seq_len}",
        f"data.cache_dir={out / 'cache'}",
        f"model.name=reversal-{p.name}",
        f"model.n_layers={p.n_layers}",
        f"model.n_heads={p.n_heads}",
        f"model.n_kv_heads={p.n_heads}",
        f"model.d_model={p.d_model}",
        f"model.d_ff={4 * p.d_model}",  # SwiGLU d_ff = 4 d (the CPU ladder's rule, config/ladder.py)
        f"model.vocab_size={p.vocab_size}",
        f"model.max_seq_len={p.seq_len}",
        f"train.seed={seed}",
        f"train.batch_size={p.batch_size}",
        f"train.max_steps={p.steps}",  # same steps x tokens for both: same 6N FLOPs (flops.py)
        f"train.lr={p.lr}",
        "train.lr_schedule=cosine",  # linear warmup, cosine to 10% of the peak (SMDM's recipe, configs/train/smdm.yaml)
        "train.warmup_fraction=0.05",  # the CPU recipe's warmup (configs/train/cpu.yaml)
        "train.val_every_n_steps=0",  # validate at the end only (val holds filler facts: a template check)
        "train.val_batches=2",
        f"train.ckpt_every_n_steps={max(p.steps // 4, 1)}",
        "train.progress_bar=false",
        f"runs_root={out / 'runs'}",
    ]


def _check(preset: Preset, seeds: int, threads: int, parallel: int, out: Path) -> None:
    for flag, value in (("--seeds", seeds), ("--threads", threads), ("--parallel", parallel)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: must be >= 1 (e.g. {flag} 1)")
    blocker = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"--out {out}: {blocker} is a file, not a directory; choose another --out")


@dataclass(frozen=True)
class Job:
    """One run of the experiment: what a worker process needs to train and evaluate it."""

    objective: str
    seed: int
    overrides: tuple[str, ...]
    preset: Preset
    eval_dir: Path


def run_job(job: Job, threads: int) -> dict[str, Any]:
    """Train (or reuse) one run, then score it (or reuse its answers); plain dicts only: it crosses processes."""
    import torch

    from llada_lightning.config.compose import compose
    from llada_lightning.training.run import train

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:  # in this process (--parallel 1) the caller's thread count comes back afterwards
        started = time.perf_counter()
        result = dict(train(compose(list(job.overrides))))
        if result.get("status") != "done":
            raise RuntimeError(f"{result.get('run_dir')}: {result.get('status')} ({result.get('message', '')})")
        trained = time.perf_counter()
        p = job.preset
        facts = make_facts(job.seed, p.n_test, p.n_both, p.n_filler, val_fraction=VAL_FRACTION)
        evaluation = evaluate_run(Path(result["run_dir"]), facts, job.eval_dir)
    finally:
        torch.set_num_threads(before)
    timing = {"train_s": trained - started, "eval_s": time.perf_counter() - trained}
    return {"objective": job.objective, "seed": job.seed, "result": result, "timing_s": timing, **evaluation}


def run_all(jobs: list[Job], threads: int, parallel: int) -> list[dict[str, Any]]:
    """Every job in order, `parallel` at a time in spawned worker processes (1: in this process)."""

    def done(i: int, run: dict[str, Any]) -> dict[str, Any]:
        t = run["timing_s"]
        print(f"[{i + 1}/{len(jobs)}] {run['objective']} seed {run['seed']}: train {t['train_s']:.0f} s, "
              f"eval {t['eval_s']:.0f} s", flush=True)  # fmt: skip
        return run

    if parallel == 1 or len(jobs) == 1:
        return [done(i, run_job(j, threads)) for i, j in enumerate(jobs)]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with ProcessPoolExecutor(max_workers=min(parallel, len(jobs)), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_job, j, threads) for j in jobs]
        return [done(i, f.result()) for i, f in enumerate(futures)]


def evaluate_run(run_dir: Path, facts: FactSet, eval_dir: Path) -> dict[str, Any]:
    """The run's answers (scoring.evaluate) and likelihood ranks (ranking.rank_accuracy), from
    `eval/<run>.json` when it holds this version's; the run's checkpoint is loaded only otherwise."""
    path = eval_dir / f"{run_dir.name}.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            stored = None
        if isinstance(stored, dict) and stored.get("eval_version") == EVAL_VERSION:
            return stored
    from llada_lightning.experiments.ranking import rank_accuracy
    from llada_lightning.experiments.scoring import evaluate
    from llada_lightning.inference.loading import load_run

    loaded = load_run(run_dir)
    record = {"eval_version": EVAL_VERSION, "run_dir": str(run_dir), **evaluate(loaded, facts)}
    record["ranking"] = rank_accuracy(loaded, facts)
    atomic_write_json(path, record)
    return record


def run_experiment(
    out: str | Path, *, quick: bool = False, seeds: int | None = None, threads: int = 1, parallel: int = 1
) -> dict[str, Any]:
    """Train, evaluate and report; returns the summary written to reversal.json."""
    from llada_lightning.experiments.report import write_outputs

    preset = QUICK if quick else FULL
    n_seeds = preset.seeds if seeds is None else seeds
    out = Path(out)
    _check(preset, n_seeds, threads, parallel, out)
    preset = replace(preset, seeds=n_seeds)
    started = time.perf_counter()
    jobs = []
    for s in range(n_seeds):
        facts = make_facts(s, preset.n_test, preset.n_both, preset.n_filler, val_fraction=VAL_FRACTION)
        corpus = write_corpus(out / "data", facts, preset.repeats, preset.val_repeats).resolve()
        for obj in OBJECTIVES:
            overrides = tuple(run_overrides(preset, obj, s, corpus, out.resolve()))
            jobs.append(Job(obj, s, overrides, preset, (out / "eval").resolve()))
    print(f"reversal ({preset.name}): {len(jobs)} runs ({n_seeds} seed(s) x {', '.join(OBJECTIVES)}) under {out}")
    runs = run_all(jobs, threads, parallel)
    timing = {"total_s": time.perf_counter() - started, "parallel": parallel, "threads": threads}
    return write_outputs(out, preset=asdict(preset), runs=runs, timing=timing)
