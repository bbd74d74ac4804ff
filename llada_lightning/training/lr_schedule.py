"""Learning-rate multipliers per optimizer step: linear warmup, then cosine, warmup-stable-decay or constant."""

from __future__ import annotations

import math

LR_SCHEDULES = ("cosine", "wsd", "constant")  # each after linear warmup


def warmup_steps(total_steps: int, fraction: float, min_steps: int) -> int:
    """SMDM: 1% of steps, at least `min_steps` (100 there), never more than the whole run."""
    return min(total_steps, max(min_steps, round(fraction * total_steps)))


def branch_step(total_steps: int, decay_fraction: float) -> int:
    """The WSD step at which the decay starts: the LR is at its peak (after warmup) for every step before it."""
    # the decay spans the final decay_fraction of steps (Hu et al. 2024, MiniCPM; Hägele et al. 2024, arXiv 2405.18392)
    return total_steps - max(1, round(decay_fraction * total_steps))


def lr_multiplier(
    step: int,
    *,
    total_steps: int,
    warmup: int,
    schedule: str,
    min_ratio: float,
    decay_fraction: float = 0.2,
) -> float:
    """The factor applied to the peak LR before optimizer step `step` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup  # linear warmup reaching the peak at the last warmup step
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(1, total_steps - warmup)
        progress = min(1.0, (step - warmup) / span)
        # cosine decay from 1 to min_ratio (Loshchilov & Hutter 2017; SMDM decays to 10%)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "wsd":
        start = branch_step(total_steps, decay_fraction)
        decay = total_steps - start
        if step < start:
            return 1.0
        progress = min(1.0, (step - start) / decay)
        # warmup-stable-decay: linear decay to min_ratio over the final decay_fraction (Hu et al. 2024, MiniCPM)
        return 1.0 - (1.0 - min_ratio) * progress
    raise ValueError(f"train.lr_schedule={schedule!r} is not one of: {', '.join(LR_SCHEDULES)}")
