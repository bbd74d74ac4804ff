"""Model-based (residual) resampling of an IsoFLOP design, for the bootstrap of the IsoFLOP-derived fits.

An IsoFLOP sweep is a designed experiment: the sizes N at each budget are chosen, not sampled. Resampling its points
(pairs) changes the design from refit to refit: a resample of 4 sizes has fewer than 3 distinct sizes a third of
the time and then no parabola, and one that drops an end of the grid moves the vertex for reasons that have nothing
to do with noise. For fixed designs the bootstrap resamples residuals instead (Efron & Tibshirani 1993, sec. 9.5;
Davison & Hinkley 1997, "Bootstrap Methods and their Application", Algorithm 6.1):
- fit each budget's parabola (loss against log10 N, as isoflop.fit_parabola); fitted values y_hat, residuals r;
- modified residuals r_i / sqrt(1 - h_ii), h the parabola's hat matrix, so each has the noise variance
  (Davison & Hinkley 1997, eq. 6.9); pooled over the objective's budgets and centred;
- a refit sees y* = y_hat + r*, r* drawn with replacement from the pool; N, D and the budgets stay as run.
With few residual degrees of freedom (df = sum over budgets of n_b - 3) the pooled noise is itself uncertain and a
bootstrap that treats it as known under-covers (for a linear statistic it gives estimate +- z s, where Student's t
interval needs estimate +- t_df s: 86% coverage instead of 95% at df = 3). The residuals are therefore scaled by
t_df(1 - q) / z(1 - q), which turns the bootstrap interval of a linear statistic under Gaussian noise into Student's
t interval (Student 1908) at the level it is computed for (approximately for the vertex-derived statistics: measured
coverage of the exponent at df = 3 rose from 0.90 to 0.96 at 95%; at lower levels it over-covers);
df = 0 (every budget sampled at exactly 3 sizes, which the parabola interpolates)
leaves the noise unknown and no interval can be formed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from llada_lightning.scaling.isoflop import BUDGET_RTOL
from llada_lightning.scaling.requirements import MIN_SIZES

_LEVERAGE_ONE = 1.0 - 1e-9  # h_ii this close to 1: the point is interpolated, its residual carries no noise


class ParabolaResiduals:
    """The pooled, modified residuals of one objective's IsoFLOP parabolas, and a resampler of its losses.

    `labels` are the budget labels of the points (NaN: no budget). `budgets` (the budgets the fit uses; default
    all): only their parabolas give residuals, so a budget left out of the fit (concave, or spoilt by a misfiled
    run) cannot inflate the noise of the others. Points of other budgets keep their observed loss in every refit.
    """

    def __init__(
        self,
        labels: np.ndarray,
        n_params: np.ndarray,
        loss: np.ndarray,
        level: float = 0.95,
        budgets=None,
    ) -> None:
        labels = np.asarray(labels, dtype=np.float64)
        x_all = np.log10(np.asarray(n_params, dtype=np.float64))
        y_all = np.asarray(loss, dtype=np.float64)
        self.fitted = y_all.copy()
        self.modelled = np.zeros(len(y_all), dtype=bool)
        pool: list[np.ndarray] = []
        self.df = 0
        for label in np.unique(labels[np.isfinite(labels)]):
            if budgets is not None and not any(abs(np.log(label / b)) <= BUDGET_RTOL for b in budgets):
                continue
            sel = np.flatnonzero(labels == label)
            x, y = x_all[sel], y_all[sel]
            if len(np.unique(x)) < MIN_SIZES:
                continue
            design = np.vander(x - 0.5 * (x.min() + x.max()), 3)  # centred, as fit_parabola
            coef, *_ = np.linalg.lstsq(design, y, rcond=None)
            y_hat = design @ coef
            q_mat, _ = np.linalg.qr(design)
            leverage = np.sum(q_mat**2, axis=1)  # diagonal of the hat matrix
            keep = leverage < _LEVERAGE_ONE
            pool.append((y - y_hat)[keep] / np.sqrt(1.0 - leverage[keep]))
            self.fitted[sel] = y_hat
            self.modelled[sel] = True
            self.df += len(sel) - MIN_SIZES
        residuals = np.concatenate(pool) if pool else np.empty(0)
        self.residuals = residuals - residuals.mean() if len(residuals) else residuals
        q = (1.0 - level) / 2.0
        self.scale = float(stats.t.ppf(1 - q, self.df) / stats.norm.ppf(1 - q)) if self.df > 0 else float("nan")

    @property
    def problem(self) -> str | None:
        """Why no residual bootstrap is possible, or None."""
        if not self.modelled.any():
            return f"no budget has {MIN_SIZES} distinct sizes: no parabola to take residuals from"
        if self.df == 0 or not np.any(self.residuals != 0):
            return (
                "no residual degrees of freedom (each budget's parabola goes exactly through its "
                f"{MIN_SIZES} sizes): the noise cannot be estimated; add sizes or repeat runs with other seeds"
            )
        return None

    @property
    def noise_sd(self) -> float:
        """The pooled noise standard deviation of the loss (before the t scaling): the modified residuals' RMS."""
        return float(np.sqrt(np.mean(self.residuals**2))) if self.df > 0 else float("nan")

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One bootstrap loss vector: y_hat + scaled residuals drawn with replacement, where a parabola exists."""
        out = self.fitted.copy()
        idx = np.flatnonzero(self.modelled)
        out[idx] += self.scale * self.residuals[rng.integers(0, len(self.residuals), len(idx))]
        return out

    def describe(self) -> dict:
        return {"residual_df": self.df, "noise_sd": self.noise_sd, "t_scale": self.scale}


def loss_resampler(
    arrays: list[np.ndarray], loss_index: int, models: list[tuple[np.ndarray, ParabolaResiduals]]
) -> Callable[[np.random.Generator], list[np.ndarray]]:
    """Refit arrays: `arrays` as they are, but the loss column (`loss_index`) redrawn by each (selector, model)."""

    def resample(rng: np.random.Generator) -> list[np.ndarray]:
        out = list(arrays)
        loss = np.array(arrays[loss_index], dtype=np.float64)
        for sel, model in models:
            loss[sel] = model.draw(rng)
        out[loss_index] = loss
        return out

    return resample
