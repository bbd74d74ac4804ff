"""The `schedules` design: a masking-schedule ablation of LLaDA against the same ARM, on identical data and compute.

Each variant is LLaDA with one change from its pretraining recipe (linear schedule, ELBO weight, i.i.d. times;
Nie et al. 2025 eq. 3), the general schedules and their ELBO weights w = -alpha'/(1 - alpha) being MDLM's (Sahoo et
al. 2024, `noise_schedule.py`):
- `linear`      alpha_t = 1 - t, w = 1/t (the reference: LLaDA's own loss)
- `cosine`      alpha_t = 1 - cos(pi/2 (1 - t)), its ELBO weight
- `poly2`       alpha_t = 1 - t^2, w = 2/t
- `unweighted`  the linear schedule with w = 1 (MaskGIT-style; trained without the bound, validated with it)
- `antithetic`  the linear schedule with antithetic times t_i = (u + i/B) mod 1 (MDLM `_sample_t`)
and `arm`, the matched autoregressive model. Every run shares the data order (the data module knows neither the
objective nor the schedule), the model ladder, the optimiser and its schedule; every LLaDA variant is validated with
the ELBO-weighted bound of its own schedule, so their losses compare. The grid is the IsoFLOP design's (budgets x a
window of sizes x seeds), with every size at every budget by default; the analysis is schedule_report.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.study.design import cell_key, register
from llada_lightning.study.isoflop import IsoFLOPDesign

# Variant -> the objective keys that define it; every row sets all of them (the ARM's are its defaults, unused).
OBJECTIVE_KEYS = ("objective", "objective.schedule", "objective.weighting", "objective.time_sampling")
VARIANTS: dict[str, tuple[str, str, str, str]] = {
    "linear": ("llada", "linear", "elbo", "iid"),
    "cosine": ("llada", "cosine", "elbo", "iid"),
    "poly2": ("llada", "polynomial", "elbo", "iid"),
    "unweighted": ("llada", "linear", "unweighted", "iid"),
    "antithetic": ("llada", "linear", "elbo", "antithetic"),
    "arm": ("arm", "linear", "elbo", "iid"),
}
REFERENCE = "linear"  # multipliers are given relative to LLaDA's own recipe and to the ARM
ARM = "arm"


def variant_of(cfg: Any) -> str:
    """The variant a run's config trains (one line naming the config when it is none of them)."""
    o = cfg.objective
    if o.name == ARM:
        return ARM
    key = (o.name, o.schedule, o.weighting, o.time_sampling)
    for name, values in VARIANTS.items():
        if values == key and (o.schedule != "polynomial" or float(o.schedule_power) == 2.0):
            return name
    raise ConfigError(
        f"a run of objective {key} with power {o.schedule_power} is none of the variants {list(VARIANTS)}"
    )


@register("schedules")
@dataclasses.dataclass
class SchedulesDesign(IsoFLOPDesign):
    """IsoFLOP profiles of each masking-schedule variant and the ARM: budgets x sizes x seeds."""

    QUICK = {
        "name": "schedules-quick",
        "seeds": [0],
        "budgets": [1e9, 4e9],
        "widths": [16, 24, 32],
        "sizes_per_budget": 3,
        "placement": "all",
        "variance_draws": 16,
        "variance_batches": 1,
        "base": IsoFLOPDesign.QUICK["base"],
    }

    name: str = "schedules"
    objectives: list[str] = dataclasses.field(default_factory=lambda: list(VARIANTS))  # variants, ARM included
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1])
    # 3 budgets over one decade x 5 sizes x 6 variants x 2 seeds = 180 runs on this machine's CPU; the sizes span
    # the optima the isoflop study measured at these budgets (2.7k..10k parameters)
    budgets: list[float] = dataclasses.field(default_factory=lambda: [4e9, 1.2e10, 4e10])
    widths: list[int] = dataclasses.field(default_factory=lambda: [8, 12, 16, 24, 32])
    sizes_per_budget: int = 5
    placement: str = "all"
    # the estimator variance: mask draws per checkpoint, and training batches they are drawn on
    variance_draws: int = 256
    variance_batches: int = 4

    def validate(self, source: str) -> None:
        super().validate(source)
        unknown = [v for v in self.objectives if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"{source}: objectives={unknown} are not variants; choose from: {', '.join(VARIANTS)}")
        if REFERENCE not in self.objectives:
            raise ConfigError(f"{source}: objectives must include {REFERENCE!r}, the reference of every multiplier")
        for key in ("variance_draws", "variance_batches"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < (2 if key == "variance_draws" else 1):
                raise ConfigError(
                    f"{source}: {key}={value!r} must be an integer >= {2 if key == 'variance_draws' else 1}"
                )

    def rows(self, windows: dict[str, list[Any]]) -> list[dict[str, Any]]:
        """The IsoFLOP rows with each variant's objective keys in place of its name."""
        out = []
        for row in super().rows(windows):
            values = VARIANTS[row.pop("objective")]
            out.append({**dict(zip(OBJECTIVE_KEYS, values, strict=True)), **row})
        return out

    def cell_of(self, cfg: Any) -> str:
        return cell_key(variant_of(cfg), float(cfg.train.flops_budget))

    def analyze(self, directory: Path, runs: list[Any], **kwargs: Any) -> tuple[dict, dict[str, Path]]:
        from llada_lightning.study.schedule_report import report_schedules

        return report_schedules(self, directory, runs, **kwargs)
