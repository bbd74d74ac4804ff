"""Data-constrained scaling law of Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models",
arXiv 2305.16264, App. A; reference code: github.com/huggingface/datablations, README "Parametric Fit" and
utils/parametric_fit.ipynb), numpy/scipy only.

The law, with N parameters, D training tokens seen (repeats included) and U unique tokens available:

    U_D = min(U, D)                                   unique tokens actually seen
    R_D = max(D / U_D - 1, 0)                         repetitions beyond the first epoch (epochs - 1)
    D'  = U_D + U_D R_D* (1 - exp(-R_D / R_D*))       effective data
    U_N = min(N_opt(U_D), N)                          the compute-optimal size for U_D unique tokens
    R_N = max(N / U_N - 1, 0)                         excess parameters (relative)
    N'  = U_N + U_N R_N* (1 - exp(-R_N / R_N*))       effective parameters
    L   = E + A / N'^alpha + B / D'^beta

R* -> inf gives N' = N and D' = D: the single-epoch (Chinchilla) law. Single-epoch points (D <= U) have D' = D
exactly. U_D = min(U, D) extends the law to D < U (a run cannot see more unique tokens than it trains on); the
datablations code asserts U <= D, where both agree.

N_opt(U_D) inverts the Chinchilla allocation (Hoffmann et al. 2022, eq. 4) at D_opt = U_D:
G = (alpha A / (beta B))^(1 / (alpha + beta)), N_opt(C) = G (C/6)^(beta/(alpha+beta)), D_opt(C) = (C/6)^(alpha/
(alpha+beta)) / G, so C/6 = (G U_D)^((alpha+beta)/alpha) and U_N = G (G U_D)^(beta/alpha)
= G^((alpha+beta)/alpha) U_D^(beta/alpha): algebraically the same as the datablations README's
`(U_D G)^(beta/alpha) G`.

Fitting follows the paper: stage 1 fits (E, A, B, alpha, beta) on the single-epoch points (R_D = 0) as Chinchilla
Approach 3 (`parametric.fit_parametric`: summed Huber, delta = 1e-3, of log residuals, L-BFGS-B from the Hoffmann
grid); stage 2 holds them and fits (R_D*, R_N*) on ALL points with the same summed Huber of log residuals, by
L-BFGS-B over (log R_D*, log R_N*) (positivity without a 0/0 at R* = 0) from a grid of starts, best objective kept.
The datablations notebook fits R* directly with torch L-BFGS from linspace(0, 20, 4) per R* (its R* = 0 starts give
NaN); here the default starts are {1, 4, ..., 20, 50, ..., 1000}^2 (R_STAR_GRID). The stage-2 objective is very flat
in R_D* (Muennighoff et al.: within 0.25% from ~14 to ~300): read `objective`, and `bootstrap_data_constrained` for
intervals. `data_half_life`: R_D* ln 2 repetitions; `repeated_data.critical_compute`: where one law overtakes another.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize

from llada_lightning.scaling import _blas
from llada_lightning.scaling.bootstrap import BootstrapResult, bootstrap
from llada_lightning.scaling.parametric import (
    HUBER_DELTA,
    LBFGS_OPTIONS,
    fit_parametric,
    log_predict,
    parametric_objective,
    start_grid,
)

STAGE1_KEYS = ("E", "A", "B", "alpha", "beta")
# Default stage-2 starts: every (R_D*, R_N*) pair of these: Muennighoff et al. 2023's range 0..20 (0 -> 1: an R* = 0
# start is 0/0) and log-spaced values up to 1000, since the objective has several shallow dips (on the 182 points of
# datablations' utils/parametric_fit.ipynb with its stage 1 held, 0..20 alone stops at R_D* = 47, objective
# 0.0158074; the published 15.39 / 5.31 is a dip at 0.0158259; this grid reaches 95.4 / 1.71 at 0.0158047).
R_STAR_GRID = (1.0, 4.0, 8.0, 12.0, 16.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
R_STAR_BOUNDS = (1e-3, 1e6)  # search range of each R*; an optimum at a bound is reported in `warnings`
SINGLE_EPOCH_RTOL = 1e-9  # R_D <= this counts as one epoch (D == U up to rounding of a CSV)
MIN_SINGLE_EPOCH = 5  # stage 1 has 5 parameters


# --------------------------------------------------------------------------------------------------------------
# The law


def _log_g(a: float, b: float, alpha: float, beta: float) -> float:
    """log G, G = (alpha A / (beta B))^(1 / (alpha + beta)) (Hoffmann et al. 2022, eq. 4)."""
    return (math.log(alpha) + a - math.log(beta) - b) / (alpha + beta)  # Hoffmann et al. 2022, eq. 4


def _log_unique_params(log_ud: np.ndarray, a: float, b: float, alpha: float, beta: float) -> np.ndarray:
    """log N_opt(U_D): the compute-optimal size of a Chinchilla law whose compute-optimal D is U_D."""
    log_g = _log_g(a, b, alpha, beta)
    # U_N = G^((alpha+beta)/alpha) U_D^(beta/alpha) = (U_D G)^(beta/alpha) G (Muennighoff et al. 2023, App. A)
    return ((alpha + beta) / alpha) * log_g + (beta / alpha) * log_ud


def _log_effective(log_u: np.ndarray, r: np.ndarray, r_star: float) -> np.ndarray:
    """log(U + U R* (1 - exp(-R / R*))), exact at R = 0 (= log U) and at R* = inf (= log(U (1 + R)))."""
    if math.isinf(r_star):
        return log_u + np.log1p(r)  # R* -> inf limit of Muennighoff et al. 2023, App. A: U (1 + R)
    # U' = U + U R* (1 - exp(-R / R*)) (Muennighoff et al. 2023, App. A; -expm1 keeps large R* exact)
    return log_u + np.log1p(r_star * -np.expm1(-r / r_star))


def _repetition(n, d, u, a: float, b: float, alpha: float, beta: float):
    """(log U_D, R_D, log U_N, R_N) of each point, broadcast."""
    n, d, u = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (n, d, u)))
    log_n, log_d, log_u = np.log(n), np.log(d), np.log(u)
    log_ud = np.minimum(log_u, log_d)  # U_D = min(U, D): unique tokens seen
    r_d = np.maximum(np.expm1(log_d - log_ud), 0.0)  # R_D = max(D / U_D - 1, 0) (Muennighoff et al. 2023, App. A)
    log_un = np.minimum(_log_unique_params(log_ud, a, b, alpha, beta), log_n)  # U_N = min(N_opt(U_D), N) (App. A)
    r_n = np.maximum(np.expm1(log_n - log_un), 0.0)  # R_N = max(N / U_N - 1, 0) (Muennighoff et al. 2023, App. A)
    return log_ud, r_d, log_un, r_n


@dataclass(frozen=True)
class DataConstrainedFit:
    """L = E + A / N'^alpha + B / D'^beta with effective N', D' (Muennighoff et al. 2023, App. A).

    Any seven values make a law (`DataConstrainedFit(E=..., A=..., ..., R_N_star=...)`); the fit fills the rest.
    `objective` is the stage-2 summed Huber (NaN when stage 2 was not run), `stage1_objective` the stage-1 one (NaN
    when all five were held), `fixed` the names held in stage 1, `warnings` what the data could not identify."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    R_D_star: float
    R_N_star: float
    objective: float = math.nan
    stage1_objective: float = math.nan
    n_points: int = 0
    n_single_epoch: int = 0
    n_starts: int = 0
    best_start: tuple[float, ...] = ()
    fixed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def theta(self) -> np.ndarray:
        """(a, b, e, alpha, beta) = (log A, log B, log E, alpha, beta), as `parametric` fits them."""
        return np.array([math.log(self.A), math.log(self.B), math.log(self.E), self.alpha, self.beta])

    @property
    def n_multi_epoch(self) -> int:
        return self.n_points - self.n_single_epoch

    def effective(self, n_params, n_tokens, unique_tokens) -> tuple[np.ndarray, np.ndarray]:
        """(N', D') at each (N, D, U), broadcast."""
        a, b, _, alpha, beta = self.theta
        log_ud, r_d, log_un, r_n = _repetition(n_params, n_tokens, unique_tokens, a, b, alpha, beta)
        return np.exp(_log_effective(log_un, r_n, self.R_N_star)), np.exp(_log_effective(log_ud, r_d, self.R_D_star))

    def unique_params(self, unique_tokens) -> np.ndarray:
        """N_opt(U_D): the compute-optimal size for U_D unique tokens under the single-epoch law (before min(., N))."""
        a, b, _, alpha, beta = self.theta
        return np.exp(_log_unique_params(np.log(np.asarray(unique_tokens, dtype=np.float64)), a, b, alpha, beta))

    def log_predict(self, n_params, n_tokens, unique_tokens) -> np.ndarray:
        a, b, _, alpha, beta = theta = self.theta
        log_ud, r_d, log_un, r_n = _repetition(n_params, n_tokens, unique_tokens, a, b, alpha, beta)
        log_np = _log_effective(log_un, r_n, self.R_N_star)
        log_dp = _log_effective(log_ud, r_d, self.R_D_star)
        return log_predict(theta, log_np, log_dp)  # L = E + A / N'^alpha + B / D'^beta (Muennighoff et al., App. A)

    def predict(self, n_params, n_tokens, unique_tokens) -> np.ndarray:
        """Predicted loss at (N, D, U) (array-likes, broadcast): N parameters, D tokens seen, U unique tokens."""
        return np.exp(self.log_predict(n_params, n_tokens, unique_tokens))

    def predict_single_epoch(self, n_params, n_tokens) -> np.ndarray:
        """The stage-1 (Chinchilla) law E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2)."""
        log_n = np.log(np.asarray(n_params, dtype=np.float64))
        log_d = np.log(np.asarray(n_tokens, dtype=np.float64))
        return np.exp(log_predict(self.theta, log_n, log_d))  # Hoffmann et al. 2022, eq. 2

    def params(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in (*STAGE1_KEYS, "R_D_star", "R_N_star")}

    def to_dict(self) -> dict:
        """JSON-serialisable (NaN and inf become None, as in fit.json; `warnings` says why an R* is inf)."""

        def clean(v):
            if isinstance(v, float):
                return v if math.isfinite(v) else None
            if isinstance(v, tuple | list):
                return [clean(x) for x in v]
            return v

        out = {k: clean(v) for k, v in asdict(self).items()}
        out["n_multi_epoch"] = self.n_multi_epoch
        out["data_half_life"] = clean(data_half_life(self))
        out["law"] = "Muennighoff et al. 2023 (arXiv 2305.16264), App. A"
        return out


# --------------------------------------------------------------------------------------------------------------
# Inputs


def _check_inputs(n_params, n_tokens, unique_tokens, loss) -> tuple[np.ndarray, ...]:
    arrays = [np.asarray(x, dtype=np.float64).ravel() for x in (n_params, n_tokens, unique_tokens, loss)]
    names = ("N", "D", "U", "L")
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) != 1:
        given = ", ".join(f"{k}: {m}" for k, m in zip(names, lengths, strict=True))
        raise ValueError(f"N, D, U and L must have the same length; got {given}")
    if lengths[0] == 0:
        raise ValueError("no points: N, D, U and L are empty")
    for name, a in zip(names, arrays, strict=True):
        bad = ~(np.isfinite(a) & (a > 0))
        if bad.any():
            raise ValueError(
                f"{name} must be finite and positive: {int(bad.sum())} of {len(a)} values are not "
                f"(first: {a[np.flatnonzero(bad)[0]]!r}); drop those points first"
            )
    return tuple(arrays)


def _check_fixed(fixed: Mapping[str, float] | None) -> dict[str, float]:
    if fixed is None:
        return {}
    if not isinstance(fixed, Mapping):
        raise ValueError(f"fixed must be a dict with keys among {', '.join(STAGE1_KEYS)}; got {type(fixed).__name__}")
    out = {}
    for key, value in fixed.items():
        if key not in STAGE1_KEYS:
            raise ValueError(f"unknown key {key!r} in fixed: the allowed keys are {', '.join(STAGE1_KEYS)}")
        v = float(value)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"fixed[{key!r}] must be finite and positive, got {value!r}")
        out[key] = v
    return out


def _check_starts(starts) -> np.ndarray:
    """Stage-2 starts as rows (R_D*, R_N*): None -> the default grid; 1-d values -> every pair of them."""
    if starts is None:
        grid = np.array(list(itertools.product(R_STAR_GRID, R_STAR_GRID)))
    else:
        s = np.asarray(list(starts) if not isinstance(starts, np.ndarray) else starts, dtype=np.float64)
        if s.ndim == 1:
            grid = np.array(list(itertools.product(s, s))).reshape(-1, 2)
        elif s.ndim == 2 and s.shape[1] == 2:
            grid = s
        else:
            raise ValueError(f"starts must be R* values (1-d) or (R_D*, R_N*) pairs (k x 2); got shape {s.shape}")
        if len(grid) == 0:
            raise ValueError("starts is empty")
        if not (np.isfinite(grid).all() and (grid > 0).all()):
            raise ValueError("every R* start must be finite and positive (R* = 0 is the 0/0 limit of the law)")
    return grid


# --------------------------------------------------------------------------------------------------------------
# Stage 1: the single-epoch law


def _stage1(log_n, log_d, log_y, fixed: dict[str, float], stage1_starts, workers: int) -> tuple[np.ndarray, float]:
    """theta = (a, b, e, alpha, beta) and its summed Huber; `fit_parametric` when nothing is held."""
    grid = start_grid() if stage1_starts is None else np.atleast_2d(np.asarray(stage1_starts, dtype=np.float64))
    if grid.shape[1] != 5:
        raise ValueError(f"stage1_starts must have 5 columns (a, b, e, alpha, beta), got shape {grid.shape}")
    if not fixed:
        pf = fit_parametric(np.exp(log_n), np.exp(log_d), np.exp(log_y), starts=grid, workers=workers)
        return pf.theta, pf.objective
    # Hold a subset: the same objective and start grid (held columns set to their values), over the free ones.
    held_theta = {"A": ("a", math.log), "B": ("b", math.log), "E": ("e", math.log)}
    index = {"a": 0, "b": 1, "e": 2, "alpha": 3, "beta": 4}
    held: dict[int, float] = {}
    for key, value in fixed.items():
        name, tf = held_theta.get(key, (key, float))
        held[index[name]] = tf(value)
    free = [i for i in range(5) if i not in held]
    grid = grid.copy()
    for i, v in held.items():
        grid[:, i] = v
    grid = np.unique(grid, axis=0)
    base = np.zeros(5)
    for i, v in held.items():
        base[i] = v
    args = (log_n, log_d, log_y)

    def fun(x):
        theta = base.copy()
        theta[free] = x
        value, grad = parametric_objective(theta, *args)
        return value, grad[free]

    best_x, best_f = None, math.inf
    with _blas.blas_threads(1):
        for x0 in grid:
            res = minimize(fun, x0[free], jac=True, method="L-BFGS-B", options=LBFGS_OPTIONS)
            if np.isfinite(res.fun) and np.all(np.isfinite(res.x)) and res.fun < best_f:
                best_x, best_f = res.x, float(res.fun)
    if best_x is None:
        raise ValueError(f"stage 1: none of the {len(grid)} starts ended on a finite objective; check the data")
    theta = base.copy()
    theta[free] = best_x
    return theta, best_f


# --------------------------------------------------------------------------------------------------------------
# Stage 2: R_D*, R_N*


def _effective_and_slope(log_u: np.ndarray, r: np.ndarray, log_r_star: float) -> tuple[np.ndarray, np.ndarray]:
    """log U' and d log U' / d log R* for U' = U + U R* (1 - exp(-R / R*)) (Muennighoff et al. 2023, App. A)."""
    r_star = math.exp(log_r_star)
    x = r / r_star
    g = -np.expm1(-x)  # 1 - exp(-R / R*)
    s = r_star * g  # R* (1 - exp(-R / R*))
    # d/dR* [R* (1 - exp(-R/R*))] = (1 - exp(-x)) - x exp(-x), x = R / R*; times R* for the log parameter
    slope = r_star * (g - x * np.exp(-x)) / (1.0 + s)
    return log_u + np.log1p(s), slope


def _stage2_objective(p, theta, log_un, r_n, log_ud, r_d, log_n, log_y, fit_n: bool, delta: float):
    """Summed Huber of log L_hat - log L over (log R_D*[, log R_N*]) with stage 1 held, and its gradient."""
    a, b, e, alpha, beta = theta
    log_dp, slope_d = _effective_and_slope(log_ud, r_d, p[0])
    if fit_n:
        log_np, slope_n = _effective_and_slope(log_un, r_n, p[1])
    else:
        log_np, slope_n = log_n, None  # R_N* = inf: N' = U_N (1 + R_N) = N
    t1 = a - alpha * log_np
    t2 = b - beta * log_dp
    m = np.maximum(np.maximum(t1, t2), e)
    x1, x2, x3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(e - m)
    s = x1 + x2 + x3
    r = m + np.log(s) - log_y  # log L_hat - log L, log L_hat = LSE(a - alpha log N', b - beta log D', e)
    c = np.clip(r, -delta, delta)  # Huber'(r)
    value = float(c @ (r - 0.5 * c))  # summed Huber (Muennighoff et al. 2023, App. A: delta = 1e-3)
    w = c / s
    grad = [float((w * x2) @ (-beta * slope_d))]
    if fit_n:
        grad.append(float((w * x1) @ (-alpha * slope_n)))
    return value, np.array(grad)


def _stage2(theta, log_un, r_n, log_ud, r_d, log_n, log_y, fit_n: bool, starts: np.ndarray):
    """Best (R_D*, R_N*) over the starts: (r_d_star, r_n_star, objective, best_start, n_starts)."""
    cols = starts if fit_n else starts[:, :1]
    x0s = np.unique(np.log(cols), axis=0)
    lo, hi = (math.log(v) for v in R_STAR_BOUNDS)
    bounds = [(lo, hi)] * x0s.shape[1]
    args = (theta, log_un, r_n, log_ud, r_d, log_n, log_y, fit_n, HUBER_DELTA)
    best = None
    with _blas.blas_threads(1):
        for x0 in x0s:
            opts = {"jac": True, "method": "L-BFGS-B", "bounds": bounds, "options": LBFGS_OPTIONS}
            res = minimize(_stage2_objective, x0, args=args, **opts)
            if np.isfinite(res.fun) and np.all(np.isfinite(res.x)) and (best is None or res.fun < best[1]):
                best = (res.x, float(res.fun), x0)
    if best is None:
        raise ValueError(f"stage 2: none of the {len(x0s)} starts ended on a finite objective; check the data")
    x, fun, x0 = best
    r_d_star = math.exp(x[0])
    r_n_star = math.exp(x[1]) if fit_n else math.inf
    return r_d_star, r_n_star, fun, tuple(float(math.exp(v)) for v in x0), len(x0s)


# --------------------------------------------------------------------------------------------------------------
# The fit


def fit_data_constrained(
    N,  # noqa: N803 - the law's own symbols
    D,  # noqa: N803
    U,  # noqa: N803
    L,  # noqa: N803
    *,
    fixed: Mapping[str, float] | None = None,
    starts: Iterable | None = None,
    stage1_starts: np.ndarray | None = None,
    workers: int = 1,
) -> DataConstrainedFit:
    """Fit the data-constrained law (Muennighoff et al. 2023, App. A) in two stages.

    N parameters, D training tokens seen (repeats included), U unique tokens, L loss: equal-length, finite, > 0.
    Stage 1: (E, A, B, alpha, beta) on the single-epoch points (D <= U) by `fit_parametric` (needs >= 5 of them).
    `fixed` holds stage-1 values (keys among E, A, B, alpha, beta, in the law's units): all five skip stage 1; a
    subset is held while the rest are fitted with the same objective and start grid. `stage1_starts` replaces the
    stage-1 grid (rows of theta = (a, b, e, alpha, beta) = (log A, log B, log E, alpha, beta); default the full
    4500-start grid of Hoffmann et al. 2022); `workers` is passed to `fit_parametric`.
    Stage 2: (R_D*, R_N*) with stage 1 held, on all points, by L-BFGS-B in log R* (bounds R_STAR_BOUNDS) from each
    of `starts`: (R_D*, R_N*) pairs (a k x 2 array-like), or 1-d R* values meaning every pair of them; default
    R_STAR_GRID x R_STAR_GRID. The best objective wins.
    Unidentified R*: with no multi-epoch point (every D <= U) both R* are set to inf, so the fit IS the stage-1
    single-epoch law; with no point beyond U_N (N <= U_N everywhere) R_N* is set to inf and R_D* fitted alone;
    an R* that ends at a search bound keeps its value. Each case is named in `warnings`.
    """
    n, d, u, y = _check_inputs(N, D, U, L)
    held = _check_fixed(fixed)
    grid2 = _check_starts(starts)
    log_n, log_d, log_u, log_y = np.log(n), np.log(d), np.log(u), np.log(y)
    r_d_raw = np.maximum(np.expm1(log_d - np.minimum(log_u, log_d)), 0.0)
    single = r_d_raw <= SINGLE_EPOCH_RTOL
    n_single = int(single.sum())
    warnings: list[str] = []

    if len(held) == len(STAGE1_KEYS):
        theta = np.array([math.log(held["A"]), math.log(held["B"]), math.log(held["E"]), held["alpha"], held["beta"]])
        stage1_obj = math.nan
    else:
        if n_single < MIN_SINGLE_EPOCH:
            raise ValueError(
                f"stage 1 needs at least {MIN_SINGLE_EPOCH} single-epoch points (D <= U) to fit E, A, B, alpha, beta;"
                f" got {n_single} of {len(y)}. Pass fixed={{'E': ..., 'A': ..., 'B': ..., 'alpha': ..., 'beta': ...}}"
                " (e.g. from a single-epoch fit) to hold the stage-1 law"
            )
        theta, stage1_obj = _stage1(log_n[single], log_d[single], log_y[single], held, stage1_starts, workers)
    a, b, e, alpha, beta = (float(v) for v in theta)
    if not (alpha > 0 and beta > 0):
        raise ValueError(f"stage 1 gave alpha = {alpha:.4g}, beta = {beta:.4g}: U_N needs both > 0")

    stage1 = {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta}
    stage1.update(held)  # held values exactly as given (not exp(log(.)))
    common = {
        "stage1_objective": stage1_obj,
        "n_points": len(y),
        "n_single_epoch": n_single,
        "fixed": tuple(k for k in STAGE1_KEYS if k in held),
    }
    if n_single == len(y):
        warnings.append(
            "no point repeats data (every D <= U): R_D* and R_N* are not identified and set to inf; "
            "the fit is the single-epoch (Chinchilla) law of stage 1"
        )
        return DataConstrainedFit(**stage1, R_D_star=math.inf, R_N_star=math.inf, warnings=tuple(warnings), **common)

    log_ud, r_d, log_un, r_n = _repetition(n, d, u, a, b, alpha, beta)
    fit_n = bool((r_n > SINGLE_EPOCH_RTOL).any())
    if not fit_n:
        warnings.append("no point has excess parameters (N <= U_N everywhere): R_N* is not identified, set to inf")
    r_d_star, r_n_star, obj, best_start, n_starts = _stage2(theta, log_un, r_n, log_ud, r_d, log_n, log_y, fit_n, grid2)
    for name, v in (("R_D*", r_d_star), ("R_N*", r_n_star)):
        if math.isfinite(v) and any(abs(math.log(v / bnd)) < 1e-6 for bnd in R_STAR_BOUNDS):
            warnings.append(f"{name} ended at the search bound {v:.4g}: the data do not bound it")
    return DataConstrainedFit(
        **stage1,
        R_D_star=r_d_star,
        R_N_star=r_n_star,
        objective=obj,
        n_starts=n_starts,
        best_start=best_start,
        warnings=tuple(warnings),
        **common,
    )


def data_half_life(fit: DataConstrainedFit) -> float:
    """Repetitions (epochs beyond the first) after which one more epoch is worth half as much as fresh data.

    From D' = U + U R_D* (1 - exp(-R_D / R_D*)), a repeated token is worth dD'/dD = exp(-R_D / R_D*) fresh ones
    (Muennighoff et al. 2023, App. A): the value decays e-fold every R_D* repetitions (R_D* is where repeated data
    has lost 1 - 1/e of its value), and halves at R_D = R_D* ln 2. inf when R_D* is inf (repeats never lose value).
    """
    return fit.R_D_star * math.log(2.0)  # exp(-h / R_D*) = 1/2 (Muennighoff et al. 2023, App. A)


# --------------------------------------------------------------------------------------------------------------
# Bootstrap


# --------------------------------------------------------------------------------------------------------------
# Derived quantities


def bootstrap_data_constrained(
    N,  # noqa: N803
    D,  # noqa: N803
    U,  # noqa: N803
    L,  # noqa: N803
    *,
    n_resamples: int = 200,
    seed: int = 0,
    fixed: Mapping[str, float] | None = None,
    workers: int = 1,
    level: float = 0.95,
    starts: Iterable | None = None,
    stage1_starts: np.ndarray | None = None,
    full: DataConstrainedFit | None = None,
) -> BootstrapResult:
    """Percentile intervals (`bootstrap.bootstrap`) of E, A, B, alpha, beta, R_D_star, R_N_star.

    `full`: the fit of these same points with these options, when the caller has it (saves refitting it).
    Pairs resampling within strata of (unique-token budget U, single-epoch or not), so every refit keeps each
    budget's points and the number of single-epoch points stage 1 needs. The full data are fitted once with the
    full start grids; each refit warm-starts stage 1 at that fit (one start) and adds its (R_D*, R_N*) to the
    stage-2 starts. Held (`fixed`) values have zero-width (unreliable) intervals by construction. `workers` runs
    the full-data stage 1 and the refits in that many processes. Intervals are reliable only with
    n_resamples >= requirements.min_resamples(level) (80 at 95%)."""
    n, d, u, y = _check_inputs(N, D, U, L)
    if full is None:
        full = fit_data_constrained(
            n, d, u, y, fixed=fixed, starts=starts, stage1_starts=stage1_starts, workers=workers
        )
    pairs = _check_starts(starts)
    if math.isfinite(full.R_D_star):
        r_n0 = full.R_N_star if math.isfinite(full.R_N_star) else R_STAR_GRID[-1]
        pairs = np.vstack([pairs, [[full.R_D_star, min(max(r_n0, R_STAR_BOUNDS[0]), R_STAR_BOUNDS[1])]]])
    warm = full.theta[None, :]

    def refit(nn, dd, uu, yy) -> dict[str, float]:
        f = fit_data_constrained(nn, dd, uu, yy, fixed=fixed, starts=pairs, stage1_starts=warm)
        return f.params()

    _, budget = np.unique(u, return_inverse=True)
    single = np.maximum(d / u - 1.0, 0.0) <= SINGLE_EPOCH_RTOL
    strata = 2 * budget + single.astype(np.int64)
    return bootstrap(
        refit, (n, d, u, y), n_resamples=n_resamples, seed=seed, level=level, strata=strata, workers=workers
    )
