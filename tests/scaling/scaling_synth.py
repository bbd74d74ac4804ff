"""Synthetic scaling data drawn from known laws, and fake sweep directories of result.json files.

The true parameters live here, written by hand, never taken from the code under test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

# Chinchilla's published fit (Hoffmann et al. 2022, eq. 10).
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
A_OPT = BETA / (ALPHA + BETA)  # N_opt ~ C^a, Hoffmann et al. 2022 eq. 4
B_OPT = ALPHA / (ALPHA + BETA)  # D_opt ~ C^b
G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
# Along the compute-optimal line both reducible terms scale as C^-(alpha beta / (alpha + beta)), so the true
# frontier is exactly E + A_F C^-ALPHA_F with:
ALPHA_F = ALPHA * BETA / (ALPHA + BETA)
A_F = (A * G**-ALPHA + B * G**BETA) * 6**ALPHA_F
K_MDM = 16.0  # the synthetic MDM needs 16x the data of the ARM for the same loss: L_MDM(N, D) = L_ARM(N, D / 16)


def chinchilla_loss(n, d):
    return E + A / np.asarray(n, dtype=float) ** ALPHA + B / np.asarray(d, dtype=float) ** BETA


def n_opt(c):
    """True compute-optimal N under C = 6 N D."""
    return G * (np.asarray(c, dtype=float) / 6) ** A_OPT


def isoflop_grid(budgets, n_sizes=7, half_width=0.5, centre_offset=0.0):
    """Sizes log-spaced over +-half_width decades around (10^centre_offset x) the true N_opt of each budget."""
    c, n = [], []
    for budget in budgets:
        for x in np.linspace(-half_width, half_width, n_sizes):
            c.append(budget)
            n.append(n_opt(budget) * 10 ** (x + centre_offset))
    c, n = np.array(c), np.array(n)
    return c, n, c / (6 * n)


def noisy(loss, sigma, rng):
    """Multiplicative log-normal noise: log L + N(0, sigma)."""
    return np.asarray(loss) * np.exp(rng.normal(0.0, sigma, np.shape(loss)))


def result_record(objective, n, d, loss, budget, *, status="done", seed=0, name=None):
    """A result.json as the trainer writes it (llada_lightning/training/run.py make_result)."""
    return {
        "status": status,
        "objective": objective,
        "model": name or f"m{n:.3g}",
        "signature": f"{objective}-{n:.4g}-{d:.4g}-{budget:.3g}-{seed}-{loss}",  # unique per run, as a config hash
        "seed": seed,
        "N_nonemb": int(n),
        "N_total": int(n * 1.1),
        "seq_len": 2048,
        "tokens": int(d),
        "flops_6N": 6.0 * n * d,
        "flops_full": 6.6 * n * d,
        "flops_convention": "6N",
        "flops_budget": budget,
        "steps": 100,
        "val_loss": loss,
        "val_bpb": None if loss is None else loss / math.log(2),
        "run_dir": "unused",
    }


def write_run(root: Path, sub: str, record: dict | None, *, config: str | None = None) -> Path:
    run = root / sub
    run.mkdir(parents=True, exist_ok=True)
    if record is not None:
        (run / "result.json").write_text(json.dumps(record))
    if config is not None:
        (run / "config.yaml").write_text(config)
    return run


def config_yaml(objective: str, model: str, budget: float, vocab: int = 4096) -> str:
    return (
        f"model:\n  name: {model}\n  n_layers: 2\n  vocab_size: {vocab}\n"
        f"objective:\n  name: {objective}\n  schedule: linear\n"
        f"train:\n  seed: 0\n  flops_budget: {budget}\n  flops_convention: 6N\n"
    )


BUDGETS = (1e18, 1e19, 1e20, 1e21, 1e22, 1e23)


def study_points(rng, sigma=0.002, budgets=BUDGETS, n_sizes=7):
    """ARM and MDM points on IsoFLOP grids: ARM follows Chinchilla, MDM = Chinchilla at D / K_MDM.

    MDM's grid is centred on its own optimum, N_opt(C / K_MDM) (the MDM is data-hungrier, so smaller).
    """
    out = []
    for objective, k in (("arm", 1.0), ("llada", K_MDM)):
        c, n, d = isoflop_grid(budgets, n_sizes)
        n = n * k**-A_OPT
        d = c / (6 * n)
        out.append((objective, c, n, d, noisy(chinchilla_loss(n, d / k), sigma, rng)))
    return out
