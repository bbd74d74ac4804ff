"""Chinchilla Approach 3: the parametric law `L(N, D) = E + A / N^alpha + B / D^beta` (Hoffmann et al. 2022, eq. 2).

Fitted exactly as Hoffmann et al. 2022 (App. D.2) with the correction of Besiroglu et al. 2024 (Epoch AI):
parameters `theta = (a, b, e, alpha, beta)` with `a = log A, b = log B, e = log E` (natural logs);
prediction `log L_hat = LSE(a - alpha log N, b - beta log D, e)`; objective = Huber(delta = 1e-3) of
`log L_hat - log L`, SUMMED over points (the mean makes the gradient so small that L-BFGS meets its default
tolerance before converging: the error in the original fit); scipy L-BFGS-B from the full grid of starts
alpha, beta in {0, .5, 1, 1.5, 2}, e in {-1, -.5, 0, .5, 1}, a, b in {0, 5, ..., 25}; the best finite result wins.
scipy's "ABNORMAL_TERMINATION_IN_LNSRCH" (precision loss) at the optimum is not treated as a failure.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from llada_lightning.scaling import _blas
from llada_lightning.scaling.errors import FitError
from llada_lightning.scaling.requirements import NEGLIGIBLE

HUBER_DELTA = 1e-3  # Hoffmann et al. 2022, App. D.2

# The start grid of Hoffmann et al. 2022 (App. D.2), reused by Besiroglu et al. 2024: 5 * 5 * 5 * 6 * 6 = 4500.
GRID_ALPHA = (0.0, 0.5, 1.0, 1.5, 2.0)
GRID_BETA = (0.0, 0.5, 1.0, 1.5, 2.0)
GRID_E = (-1.0, -0.5, 0.0, 0.5, 1.0)
GRID_A = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
GRID_B = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)

# scipy's default ftol (2.2e-9) is an absolute test when |f| < 1: the summed Huber near an optimum is ~1e-4 (n points
# x delta x residual), so the default stops after ~1e-5 relative progress, the same failure in kind as averaging.
# Tighter tolerances let every start finish (about 20% more evaluations); `options` overrides them.
LBFGS_OPTIONS = {"ftol": 1e-12, "gtol": 1e-10, "maxiter": 15000}
CHUNK = 50  # starts per task when the grid is split over processes (progress is reported per chunk)


def start_grid() -> np.ndarray:
    """The full grid of starts as rows of theta = (a, b, e, alpha, beta): 4500 rows."""
    rows = itertools.product(GRID_A, GRID_B, GRID_E, GRID_ALPHA, GRID_BETA)
    return np.array(list(rows), dtype=np.float64)


def log_predict(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    """log L_hat = LSE(a - alpha log N, b - beta log D, e), computed stably."""
    a, b, e, alpha, beta = theta
    t1 = a - alpha * log_n
    t2 = b - beta * log_d
    m = np.maximum(np.maximum(t1, t2), e)
    return m + np.log(np.exp(t1 - m) + np.exp(t2 - m) + np.exp(e - m))


def parametric_objective(
    theta: np.ndarray,
    log_n: np.ndarray,
    log_d: np.ndarray,
    log_loss: np.ndarray,
    *,
    delta: float = HUBER_DELTA,
    reduction: str = "sum",
) -> tuple[float, np.ndarray]:
    """Huber objective of Approach 3 and its analytic gradient with respect to theta = (a, b, e, alpha, beta).

    `reduction="sum"` is the specified objective; `"mean"` (divide by the number of points) is offered only to
    show why it is wrong: same minimiser, but gradients n times smaller, so L-BFGS-B stops early.
    Inputs are natural logs of N, D and the loss.
    """
    a, b, e, alpha, beta = theta
    t1 = a - alpha * log_n
    t2 = b - beta * log_d
    m = np.maximum(t1, t2)
    np.maximum(m, e, out=m)  # shift of the log-sum-exp, per point
    t1 -= m
    x1 = np.exp(t1, out=t1)
    t2 -= m
    x2 = np.exp(t2, out=t2)
    x3 = np.exp(e - m)
    s = x1 + x2
    s += x3
    r = np.log(s)
    r += m
    r -= log_loss  # residual log L_hat - log L
    c = np.minimum(np.maximum(r, -delta), delta)  # Huber'(r)
    value = float(c @ (r - 0.5 * c))  # = sum of Huber(r): r^2/2 inside delta, delta (|r| - delta/2) outside
    w = c / s
    g1 = w * x1  # dHuber/d(a - alpha log N) per point (softmax weight times Huber')
    g2 = w * x2
    grad = np.array([g1.sum(), g2.sum(), w @ x3, -(g1 @ log_n), -(g2 @ log_d)])
    if reduction == "mean":
        n = len(log_loss)
        return value / n, grad / n
    if reduction != "sum":
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    return value, grad


@dataclass
class ParametricFit:
    """Fitted `L(N, D) = E + A / N^alpha + B / D^beta` (natural-log parameters a, b, e kept as fitted)."""

    a: float
    b: float
    e: float
    alpha: float
    beta: float
    objective: float  # summed Huber at the optimum (in the reduction used)
    n_points: int
    n_starts: int
    n_finite: int  # starts that ended on a finite objective
    best_start: tuple[float, ...] = ()
    n_iterations: int = 0
    message: str = ""
    reduction: str = "sum"

    @property
    def A(self) -> float:  # noqa: N802 - the law's own symbol
        return float(np.exp(self.a))

    @property
    def B(self) -> float:  # noqa: N802
        return float(np.exp(self.b))

    @property
    def E(self) -> float:  # noqa: N802
        return float(np.exp(self.e))

    @property
    def theta(self) -> np.ndarray:
        return np.array([self.a, self.b, self.e, self.alpha, self.beta])

    def predict(self, n_params, n_tokens) -> np.ndarray:
        """Predicted loss at (N, D)."""
        log_n = np.log(np.asarray(n_params, dtype=np.float64))
        log_d = np.log(np.asarray(n_tokens, dtype=np.float64))
        return np.exp(log_predict(self.theta, log_n, log_d))

    def optimal_allocation(self, compute) -> tuple[np.ndarray, np.ndarray]:
        """Compute-optimal (N, D) under C = 6 N D (Hoffmann et al. 2022, eq. 4): N_opt = G (C/6)^a, D_opt = (C/6)^b / G.

        With a = beta / (alpha + beta), b = alpha / (alpha + beta), G = (alpha A / (beta B))^(1 / (alpha + beta)).
        """
        c6 = np.asarray(compute, dtype=np.float64) / 6.0
        s = self.alpha + self.beta
        log_g = (np.log(self.alpha) + self.a - np.log(self.beta) - self.b) / s
        n_opt = np.exp(log_g + (self.beta / s) * np.log(c6))
        return n_opt, c6 / n_opt

    def params(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta}

    def at_bound(self, n_params, n_tokens, loss) -> dict[str, str]:
        """Terms the fit drove to zero, E >= 0, A, B >= 0 being the law's bounds: {"E": "lower", ...}.

        A term counts as 0 when it is below NEGLIGIBLE x the smallest loss at every point, far below the noise of
        any loss measurement (e = log E drifts towards -inf there: E prints as `0 (at bound)`, not as 1e-296)."""
        n = np.asarray(n_params, dtype=np.float64)
        d = np.asarray(n_tokens, dtype=np.float64)
        floor = NEGLIGIBLE * float(np.min(loss))
        terms = {
            "E": self.E,
            "A": float(np.max(np.exp(self.a - self.alpha * np.log(n)))),
            "B": float(np.max(np.exp(self.b - self.beta * np.log(d)))),
        }
        return {k: "lower" for k, v in terms.items() if v < floor}


def _check_points(n_params, n_tokens, loss) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = np.asarray(n_params, dtype=np.float64).ravel()
    d = np.asarray(n_tokens, dtype=np.float64).ravel()
    y = np.asarray(loss, dtype=np.float64).ravel()
    if not (len(n) == len(d) == len(y)):
        raise ValueError(f"n_params, n_tokens and loss differ in length ({len(n)}, {len(d)}, {len(y)})")
    if len(y) < 5:
        raise FitError(f"the parametric law has 5 parameters; got only {len(y)} points", kind="parametric: < 5 points")
    bad = ~(np.isfinite(n) & np.isfinite(d) & np.isfinite(y) & (n > 0) & (d > 0) & (y > 0))
    if bad.any():
        raise FitError(
            f"{int(bad.sum())} points have a non-finite or non-positive N, D or loss; drop them first",
            kind="parametric: non-finite or non-positive point",
        )
    for name, values in (("N (n_params)", n), ("D (n_tokens)", d)):
        if len(np.unique(values)) < 2:  # A/N^alpha (or B/D^beta) is then a constant: alpha is not identified
            raise FitError(
                f"all points share one {name} value: the law needs >= 2 distinct values of N and of D",
                kind=f"parametric: one {name.split()[0]} value",
            )
    return np.log(n), np.log(d), np.log(y)


def _lbfgs(x0: np.ndarray, args: tuple, delta: float, reduction: str, options: dict):
    def fun(theta):
        return parametric_objective(theta, *args, delta=delta, reduction=reduction)

    return minimize(fun, x0, jac=True, method="L-BFGS-B", options=options)


def _best_of(
    starts: np.ndarray, args: tuple, delta: float, reduction: str, options: dict, progress=None, done: int = 0
) -> tuple:
    """Run L-BFGS-B from each start; return (x, fun, nit, message, start, n_finite) of the best finite end."""
    best = None
    n_finite = 0
    for i, x0 in enumerate(starts):
        if progress is not None:
            progress(done + i, None)
        res = _lbfgs(x0, args, delta, reduction, options)
        # A finite end counts whatever res.success says: "ABNORMAL_TERMINATION_IN_LNSRCH" is scipy's precision
        # loss at a flat optimum (Besiroglu et al. 2024), not a failed fit.
        if not (np.isfinite(res.fun) and np.all(np.isfinite(res.x))):
            continue
        n_finite += 1
        if best is None or res.fun < best[1]:
            best = (res.x, float(res.fun), int(res.nit), str(res.message), x0)
    return (*best, n_finite) if best is not None else (None, np.inf, 0, "", None, 0)


def _best_of_parts(parts: list[tuple]) -> tuple:
    """The best of several `_best_of` results, the first one winning ties (as one sequential pass would)."""
    n_finite = sum(p[5] for p in parts)
    finite = [p for p in parts if p[0] is not None]
    if not finite:
        return (None, np.inf, 0, "", None, 0)
    best = finite[0]
    for p in finite[1:]:
        if p[1] < best[1]:
            best = p
    return (*best[:5], n_finite)


def fit_parametric(
    n_params,
    n_tokens,
    loss,
    *,
    delta: float = HUBER_DELTA,
    starts: np.ndarray | None = None,
    reduction: str = "sum",
    options: dict | None = None,
    workers: int = 1,
    blas_threads: int | None = 1,
    progress: Callable[[int, int], None] | None = None,
) -> ParametricFit:
    """Fit the Approach-3 law by L-BFGS-B from every start (default: the full 4500-start grid); keep the best.

    `starts` (rows of theta = (a, b, e, alpha, beta)) replaces the grid, e.g. to warm-start bootstrap refits.
    `workers > 1` splits the starts over that many processes (same result, the starts are independent).
    `blas_threads` limits OpenBLAS threads during the fit (1 by default: much faster for 5 parameters; None: as is).
    `options` updates the L-BFGS-B options (default LBFGS_OPTIONS; `{"ftol": 2.2e-9, "gtol": 1e-5}` = scipy's).
    `reduction="mean"` exists only for the ablation that shows why the sum is specified.
    `progress(done, total)` is called as starts finish (per start, or per chunk of CHUNK starts with workers > 1).
    Raises FitError (a ValueError) if no start ends on a finite objective.
    """
    log_n, log_d, log_y = _check_points(n_params, n_tokens, loss)
    grid = start_grid() if starts is None else np.atleast_2d(np.asarray(starts, dtype=np.float64))
    if grid.shape[1] != 5:
        raise ValueError(f"starts must have 5 columns (a, b, e, alpha, beta), got shape {grid.shape}")
    args = (log_n, log_d, log_y)
    opts = {**LBFGS_OPTIONS, **(options or {})}
    total = len(grid)
    tick = None if progress is None else (lambda done, _: progress(done, total))
    with _blas.blas_threads(blas_threads):
        if workers > 1 and len(grid) >= 2 * workers:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
            chunks = [grid[i : i + CHUNK] for i in range(0, len(grid), CHUNK)]
            parts: list[tuple | None] = [None] * len(chunks)
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = {pool.submit(_best_of, ch, args, delta, reduction, opts): i for i, ch in enumerate(chunks)}
                done = 0
                for fut in as_completed(futures):
                    parts[futures[fut]] = fut.result()
                    done += len(chunks[futures[fut]])
                    if tick is not None:
                        tick(done, total)
            x, fun, nit, message, x0, n_finite = _best_of_parts(parts)  # chunk order: ties as in one pass
        else:
            x, fun, nit, message, x0, n_finite = _best_of(grid, args, delta, reduction, opts, tick)
        if tick is not None:
            tick(total, total)
    if x is None:
        raise FitError(
            f"none of the {len(grid)} starts ended on a finite objective; check the data",
            kind="parametric: no finite fit",
        )
    a, b, e, alpha, beta = (float(v) for v in x)
    return ParametricFit(
        a=a,
        b=b,
        e=e,
        alpha=alpha,
        beta=beta,
        objective=fun,
        n_points=len(log_y),
        n_starts=len(grid),
        n_finite=n_finite,
        best_start=tuple(float(v) for v in x0),
        n_iterations=nit,
        message=message,
        reduction=reduction,
    )
