"""Where one data-constrained law overtakes another: the compute-optimal loss at a unique-token budget, and the
critical compute beyond which model b's optimal loss falls below model a's (Prabhudesai et al. 2025, "Diffusion
Beats Autoregressive in Data-Constrained Settings": diffusion overtakes autoregression at a compute that grows as a
power of the unique tokens). Laws from `data_constrained.fit_data_constrained` (Muennighoff et al. 2023, App. A).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from llada_lightning.scaling.data_constrained import DataConstrainedFit, _log_g


def optimal_loss(
    fit: DataConstrainedFit,
    compute,
    unique_tokens: float,
    *,
    flops_per_token: float = 6.0,
    span_decades: float = 6.0,
    n_grid: int = 241,
) -> tuple[np.ndarray, np.ndarray]:
    """(L*(C), N*(C)): the least predicted loss over model sizes N at compute C, with D = C / (flops_per_token N)
    tokens from `unique_tokens` unique ones, and the N that reaches it.

    Dense grid of log N over +-span_decades around the Chinchilla N_opt(C) of the fit's stage-1 law, then a bounded
    scalar refinement (scipy minimize_scalar) inside the best grid cell's neighbours."""
    c = np.atleast_1d(np.asarray(compute, dtype=np.float64))
    a, b, _, alpha, beta = fit.theta
    log_g = _log_g(a, b, alpha, beta)
    log_c6 = np.log(c / flops_per_token)
    log_n0 = log_g + (beta / (alpha + beta)) * log_c6  # N_opt = G (C/6)^(beta/(alpha+beta)) (Hoffmann 2022, eq. 4)
    steps = np.linspace(-span_decades, span_decades, n_grid) * math.log(10.0)
    grid = log_n0[:, None] + steps[None, :]

    def log_loss(log_nn, log_c6_i):
        return fit.log_predict(np.exp(log_nn), np.exp(log_c6_i - log_nn), unique_tokens)  # D = C / (6 N)

    values = log_loss(grid, log_c6[:, None])
    best_l = np.empty(len(c))
    best_n = np.empty(len(c))
    for i in range(len(c)):
        j = int(np.nanargmin(values[i]))
        lo, hi = grid[i, max(j - 1, 0)], grid[i, min(j + 1, n_grid - 1)]
        res = minimize_scalar(
            lambda x, i=i: float(log_loss(x, log_c6[i])), bounds=(lo, hi), method="bounded", options={"xatol": 1e-9}
        )
        x, fx = (res.x, res.fun) if res.fun <= values[i, j] else (grid[i, j], values[i, j])
        best_l[i], best_n[i] = math.exp(fx), math.exp(x)
    shape = np.shape(compute)
    return best_l.reshape(shape), best_n.reshape(shape)


def critical_compute(
    fit_a: DataConstrainedFit,
    fit_b: DataConstrainedFit,
    U: float,  # noqa: N803
    *,
    flops_per_token: float = 6.0,
    compute_range: tuple[float, float] = (1e15, 1e27),
    n_grid: int = 97,
) -> float:
    """The smallest compute C in `compute_range` at which model b's compute-optimal loss falls below model a's, for
    U unique tokens (Prabhudesai et al. 2025: critical compute, a = autoregressive, b = diffusion).

    L_x(C) = min over N of fit_x.predict(N, C / (flops_per_token N), U) (`optimal_loss`). The sign of
    log L_b - log L_a is scanned on `n_grid` log-spaced C; the first change from >= 0 to < 0 is refined by brentq in
    log C. Returns compute_range[0] when b is already below a there (any crossing lies below the range), and
    math.inf when b stays at or above a over the whole range (no crossing found; a crossing narrower than a grid
    cell can be missed)."""
    lo, hi = compute_range
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"compute_range must be 0 < low < high < inf, got {compute_range}")
    log_c = np.linspace(math.log(lo), math.log(hi), n_grid)

    def diff(x):
        c = np.exp(np.atleast_1d(x))
        la, _ = optimal_loss(fit_a, c, U, flops_per_token=flops_per_token)
        lb, _ = optimal_loss(fit_b, c, U, flops_per_token=flops_per_token)
        return np.log(lb) - np.log(la)

    f = diff(log_c)
    below = np.flatnonzero(f < 0)
    if len(below) == 0:
        return math.inf
    i = int(below[0])
    if i == 0:
        return float(lo)
    root = brentq(lambda x: float(diff(x)[0]), log_c[i - 1], log_c[i], xtol=1e-12, rtol=1e-12)
    return float(math.exp(root))
