"""The cheapest micro-batch, gradient accumulation and checkpointing that fit a GPU, and the check of a run's config.

Cheapest means, in this order: no activation checkpointing (it recomputes each block's forward, a third more
compute per step: Korthikanti et al. 2022, Sec. 5), then the largest micro-batch (the fewest accumulation steps,
the best-shaped matmuls). The micro-batch divides the per-GPU share of the global batch, so accumulation reaches
the global batch exactly: micro_batch x accumulation x gpus = global_batch (every strategy here is data-parallel).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import ModelConfig
from llada_lightning.flops import param_counts
from llada_lightning.planning.memory import DEFAULT_OVERHEAD, GB, MemoryEstimate, memory_estimate

if TYPE_CHECKING:
    from llada_lightning.config.schema import RunConfig

_UNITS = {"": GB, "g": GB, "gb": GB, "gib": 2**30, "m": 1e6, "mb": 1e6, "mib": 2**20, "t": 1e12, "tb": 1e12}


def parse_memory(text: str | float | int) -> float:
    """Bytes from `80GB`, `80GiB`, `80` (GB), `512MiB`, `1.5e9B`... (GB = 1e9 bytes, GiB = 2^30)."""
    if isinstance(text, (int, float)):
        return float(text) * GB
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
    unit = match.group(2) if match else None
    if match is None or (unit not in _UNITS and unit != "b"):
        raise ConfigError(f"memory {text!r}: give a number with a unit, e.g. 80GB, 80GiB or 512MiB")
    return float(match.group(1)) * (1.0 if unit == "b" else _UNITS[unit])


@dataclass
class Proposal:
    """The chosen micro-batch, accumulation and checkpointing for one model, and its per-GPU estimate."""

    model: str
    n_total: int
    seq_len: int
    micro_batch: int
    accumulation: int
    checkpointing: bool
    fits: bool
    estimate: MemoryEstimate


def micro_batches(per_gpu: int) -> list[int]:
    """Divisors of the per-GPU batch, largest first."""
    return [m for m in range(per_gpu, 0, -1) if per_gpu % m == 0]


def propose(
    cfg: ModelConfig,
    *,
    gpu_memory: float,
    gpus: int,
    global_batch: int,
    seq_len: int,
    precision: str = "bf16-mixed",
    strategy: str = "ddp",
    sharding: str = "full",
    gpus_per_node: int = 8,
    micro_batch: int | None = None,
    checkpointing: bool | None = None,
    attention: str = "sdpa",
    objective: str = "llada",
    overhead: float = DEFAULT_OVERHEAD,
) -> Proposal:
    """The cheapest (micro-batch, checkpointing) that fits `gpu_memory` bytes; when none does, the smallest one,
    marked `fits=False`. `micro_batch` / `checkpointing` fix that choice instead of searching it."""
    if gpus < 1 or global_batch < 1 or seq_len < 1:
        raise ConfigError("--gpus, --global-batch and --seq-len must be >= 1")
    if global_batch % gpus:
        raise ConfigError(
            f"--global-batch {global_batch} is not a multiple of --gpus {gpus}; each GPU takes an equal share"
        )
    per_gpu = global_batch // gpus
    if micro_batch is not None and (micro_batch < 1 or per_gpu % micro_batch):
        raise ConfigError(
            f"--micro-batch {micro_batch} does not divide the per-GPU batch {per_gpu} (--global-batch {global_batch} "
            f"/ --gpus {gpus}); choose one of {', '.join(map(str, micro_batches(per_gpu)))}"
        )
    options = [(ckpt, m) for ckpt in ((False, True) if checkpointing is None else (checkpointing,))
               for m in ([micro_batch] if micro_batch else micro_batches(per_gpu))]  # fmt: skip
    smallest: Proposal | None = None
    for ckpt, m in options:
        estimate = memory_estimate(
            cfg,
            m,
            seq_len,
            precision,
            strategy=strategy,
            sharding=sharding,
            gpus=gpus,
            gpus_per_node=gpus_per_node,
            checkpointing=ckpt,
            accumulation=per_gpu // m,
            attention=attention,
            objective=objective,
            overhead=overhead,
        )
        proposal = Proposal(
            cfg.name, param_counts(cfg)[1], seq_len, m, per_gpu // m, ckpt, estimate.total <= gpu_memory, estimate
        )
        if proposal.fits:
            return proposal
        if smallest is None or estimate.total < smallest.estimate.total:
            smallest = proposal
    assert smallest is not None
    return smallest


def run_memory(cfg: RunConfig, overhead: float = DEFAULT_OVERHEAD) -> MemoryEstimate:
    """The per-GPU estimate of a run as configured (micro-batch, accumulation, precision, strategy, checkpointing)."""
    t = cfg.train
    strategy = {"ddp_spawn": "ddp", "single_device": "auto"}.get(t.strategy, t.strategy)
    fsdp = getattr(t, "fsdp", None)
    return memory_estimate(
        cfg.model,
        t.batch_size,
        cfg.data.seq_len,
        t.precision,
        strategy=strategy,
        sharding=getattr(fsdp, "sharding", "full"),
        gpus=t.devices * t.num_nodes,
        gpus_per_node=t.devices,
        checkpointing=bool(getattr(t, "activation_checkpointing", False)),
        accumulation=t.accumulate_grad_batches,
        attention=cfg.attention.backend,
        objective="arm" if cfg.objective.name == "arm" else "llada",
        overhead=overhead,
    )


def fit_warning(cfg: RunConfig, gpu_memory: float, name: str) -> str | None:
    """One line when the run of `cfg` will not fit `gpu_memory` bytes per GPU (with the cheapest setting that
    does, at the same global batch), else None."""
    estimate = run_memory(cfg)
    if estimate.total <= gpu_memory:
        return None
    t = cfg.train
    gpus = t.devices * t.num_nodes
    ckpt = bool(getattr(t, "activation_checkpointing", False))
    fsdp = getattr(t, "fsdp", None)
    strategy = {"ddp_spawn": "ddp", "single_device": "auto"}.get(t.strategy, t.strategy)
    better = propose(
        cfg.model,
        gpu_memory=gpu_memory,
        gpus=gpus,
        global_batch=t.batch_size * t.accumulate_grad_batches * gpus,
        seq_len=cfg.data.seq_len,
        precision=t.precision,
        strategy=strategy,
        sharding=getattr(fsdp, "sharding", "full"),
        gpus_per_node=t.devices,
        attention=cfg.attention.backend,
        objective="arm" if cfg.objective.name == "arm" else "llada",
    )
    if better.fits:
        keys = [f"train.batch_size={better.micro_batch}", f"train.accumulate_grad_batches={better.accumulation}"]
        if better.checkpointing != ckpt:
            keys.append(f"train.activation_checkpointing={str(better.checkpointing).lower()}")
        hint = "fits with " + " ".join(keys)
    else:
        hint = "does not fit at micro-batch 1 with checkpointing either: use more GPUs or train.strategy=fsdp"
    return (
        f"warning: {name} will not fit: ~{estimate.total / GB:.1f} GB per GPU of {gpu_memory / GB:.0f} GB "
        f"(micro-batch {t.batch_size} x {cfg.data.seq_len}, {t.precision}, {t.strategy}"
        f"{', checkpointing' if ckpt else ''}); {hint} (llada plan)"
    )
