"""Measured step times, for the wall-time estimate of `llada study --dry-run`.

A step of each distinct model shape is timed as a bare loop (objective, backward, AdamW step) on random tokens
with the threads a run gets, median of a few steps after warm-up. `llada train` adds its framework overhead on top
(benchmarks/bench_train.py measures that ratio) and each run pays a fixed start-up (process, data, validation,
checkpoint): both are added as the constants below, so the estimate is an estimate, printed as one.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

FRAMEWORK_RATIO = 0.95  # bare / `llada train` step time of the study's models (bench_train.py: 0.90-0.96)
STARTUP_S = 3.0  # a run's fixed cost, forked from the preloaded local worker: data, validation, checkpoint, result


def step_time(cfg: Any, *, threads: int = 1, steps: int = 6, warmup: int = 2) -> float:
    """Median seconds of one bare training step of `cfg` (model, objective, batch) with `threads` threads."""
    import torch

    from llada_lightning.training.modules import build_module

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        module = build_module(cfg)
        model, objective = module.model, module.objective
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = torch.randint(0, cfg.data.vocab_size, (cfg.train.batch_size, cfg.data.seq_len))
        gen = torch.Generator().manual_seed(0)
        times = []
        for i in range(warmup + steps):
            start = time.perf_counter()
            loss = objective.training_loss(model, batch, gen)["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if i >= warmup:
                times.append(time.perf_counter() - start)
        return statistics.median(times)
    finally:
        torch.set_num_threads(previous)


def shape_key(cfg: Any) -> tuple:
    """What a step time depends on: the model's shape, the objective, batch and sequence length."""
    m = cfg.model
    return (
        cfg.objective.name,
        m.n_layers,
        m.n_heads,
        m.d_model,
        m.d_ff,
        m.vocab_size,
        cfg.train.batch_size,
        cfg.data.seq_len,
    )


def estimate(runs: list[Any], *, threads: int = 1) -> dict[str, float]:
    """Estimated wall seconds of each run (by signature): steps x measured step time / FRAMEWORK_RATIO + STARTUP_S."""
    measured: dict[tuple, float] = {}
    out = {}
    for run in runs:
        key = shape_key(run.cfg)
        if key not in measured:
            measured[key] = step_time(run.cfg, threads=threads)
        out[run.signature] = run.steps * measured[key] / FRAMEWORK_RATIO + STARTUP_S
    return out


def accelerator_estimate(runs: list[Any], *, peak_flops: float, mfu: float) -> dict[str, float]:
    """Estimated device-seconds of each run on accelerators of `peak_flops` FLOP/s each at model FLOPs utilisation
    `mfu`: its compute in the full convention (every matmul, head and attention; Chinchilla App. F) over
    peak_flops x mfu, plus STARTUP_S. GPU-hours = device-seconds / 3600, however many devices a run uses."""
    return {run.signature: run.flops("full") / (peak_flops * mfu) + STARTUP_S for run in runs}


def shared_estimate(runs: list[Any], est: dict[str, float], trunks: list[Any]) -> float:
    """Estimated run seconds of the whole study when WSD trunks are shared (sweep/trunks.py): each trunk once (to
    its last branch step), each branch only its decay, every other run in full."""
    per_step = {r.signature: (est[r.signature] - STARTUP_S) / max(1, r.steps) for r in runs}
    branch = {b.run.signature: b for t in trunks for b in t.branches}
    total = 0.0
    for run in runs:
        b = branch.get(run.signature)
        total += est[run.signature] if b is None else per_step[run.signature] * (run.steps - b.step) + STARTUP_S
    for trunk in trunks:
        step = per_step[trunk.branches[0].run.signature]
        total += step * trunk.steps[-1] + STARTUP_S
    return total
