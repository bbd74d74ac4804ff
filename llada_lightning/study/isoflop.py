"""The `isoflop` design (Hoffmann et al. 2022, Approach 2): for each objective and compute budget, a window of model
sizes trained to that budget (D = C / FLOPs per token), whose parabola in log N gives the budget's optimum.

Sizes come from a micro-ladder of `n_layers`-layer SwiGLU Transformers (d_ff = ffn_multiple * d, as SMDM's ladder)
that differ only in width `d_model` (`widths`); each (objective, budget) samples `sizes_per_budget` consecutive
sizes. `placement: auto` places each budget's window around the optimum predicted from the finished smaller
budgets (placement.py); `placement: all` trains every size at every budget (no waiting, more runs).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.flops import CONVENTIONS, param_counts
from llada_lightning.study.design import Design, cell_key, register
from llada_lightning.study.placement import Vertex, predict_optimum, vertex, window

PLACEMENTS = ("auto", "all")


def size_label(n_params: int) -> str:
    """`m4.7k`, `m131k`, `m1.2M`: a size's name from its non-embedding parameters (2-3 significant digits)."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n_params >= scale:
            v = n_params / scale
            return f"m{v:.2g}{unit}" if v < 10 else f"m{v:.0f}{unit}"
    return f"m{n_params}"


@register("isoflop")
@dataclasses.dataclass
class IsoFLOPDesign(Design):
    """IsoFLOP profiles of each objective: budgets x a window of sizes x seeds."""

    QUICK = {
        "name": "isoflop-quick",
        "seeds": [0],
        "budgets": [1e9, 3e9, 1e10],
        "widths": [16, 24, 32],
        "sizes_per_budget": 3,
        "placement": "all",
        "base": [
            "model=cpu-0.1m",
            "data.vocab_size=1024",
            "model.vocab_size=1024",
            "data.seq_len=32",
            "train.batch_size=8",
            "train.lr=3e-3",
            "train.val_every_n_steps=0",
            "train.val_batches=4",
            "train.ckpt_every_n_steps=1000",
            "train.log_every_n_steps=50",
            "train.progress_bar=false",
        ],
    }

    name: str = "isoflop"
    # two seeds of every run: the ARM's exponent interval narrows from 0.34 to 0.13 wide (experiments/README.md);
    # the main job stays under 10 minutes because every size's runs share one WSD trunk
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1])
    # 5 budgets over 1.5 decades (x2.4 apart), 5 sizes each: what a 15-minute main job on 2 cores affords
    budgets: list[float] = dataclasses.field(default_factory=lambda: [4e9, 9.6e9, 2.3e10, 5.5e10, 1.3e11])
    convention: str = "6N"  # the convention of `budgets` (C = 6 N D for 6N; flops.py)
    widths: list[int] = dataclasses.field(default_factory=lambda: [8, 12, 16, 24, 32, 48, 64])  # N x1.8-2.2 apart
    n_layers: int = 2
    n_heads: int = 2
    ffn_multiple: int = 4
    sizes_per_budget: int = 5  # a window spans ~16x in N: curvature well above the ~0.025-nat noise of a run
    placement: str = "auto"
    prior_exponent: float = 0.5  # N* ~ C^a before two budgets have vertices (Chinchilla: a ~ 0.5)
    first_centre: int | None = (
        None  # the width at the centre of the smallest budget's window (None: the smallest widths)
    )
    base: list[str] = dataclasses.field(
        default_factory=lambda: [
            "model=cpu-0.1m",
            "data.vocab_size=512",  # a tiny model's step is ~20 ms flat at 1024, ~14 ms at 512 (timing.py)
            "model.vocab_size=512",
            "data.seq_len=64",
            "train.batch_size=16",
            "train.lr=3e-3",
            "train.val_every_n_steps=0",
            "train.val_batches=32",
            "train.ckpt_every_n_steps=1000",
            "train.log_every_n_steps=50",
            "train.progress_bar=false",
        ]
    )

    def validate(self, source: str) -> None:
        super().validate(source)
        if not self.budgets or any(not isinstance(b, int | float) or not b > 0 for b in self.budgets):
            raise ConfigError(f"{source}: budgets={self.budgets} must be a non-empty list of positive FLOP counts")
        if len(set(self.budgets)) != len(self.budgets):
            raise ConfigError(f"{source}: budgets={self.budgets} repeats a budget")
        if self.convention not in CONVENTIONS:
            raise ConfigError(f"{source}: convention={self.convention!r} is not one of: {', '.join(CONVENTIONS)}")
        if not self.widths or any(not isinstance(w, int) or w <= 0 for w in self.widths):
            raise ConfigError(f"{source}: widths={self.widths} must be a non-empty list of positive integers")
        if sorted(set(self.widths)) != list(self.widths):
            raise ConfigError(f"{source}: widths={self.widths} must be increasing, without repeats")
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"{source}: placement={self.placement!r} is not one of: {', '.join(PLACEMENTS)}")
        if not isinstance(self.sizes_per_budget, int) or not 3 <= self.sizes_per_budget <= len(self.widths):
            raise ConfigError(
                f"{source}: sizes_per_budget={self.sizes_per_budget} must lie in [3, {len(self.widths)}] "
                "(a parabola needs 3 sizes; the ladder has that many widths)"
            )
        if self.first_centre is not None and self.first_centre not in self.widths:
            raise ConfigError(
                f"{source}: first_centre={self.first_centre} is not one of the widths {self.widths}; set it to one "
                "of them (--set first_centre=W), or to null for the smallest widths"
            )
        if not 0 < self.prior_exponent <= 1:
            raise ConfigError(f"{source}: prior_exponent={self.prior_exponent} must lie in (0, 1]")
        for key in ("n_layers", "n_heads", "ffn_multiple"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(f"{source}: {key}={getattr(self, key)} must be a positive integer")
        for width in self.widths:  # the base and every size compose (one line naming the problem otherwise)
            self.n_params(width)

    # -- sizes ---------------------------------------------------------------------------------------------------
    def model_keys(self, width: int) -> dict[str, Any]:
        """The config keys of one size of the ladder."""
        return {
            "model.name": size_label(self.n_params(width)),
            "model.d_model": width,
            "model.d_ff": self.ffn_multiple * width,
        }

    def n_params(self, width: int) -> int:
        """Non-embedding parameters of the size of this width (flops.param_counts, exact for the built model)."""
        return _n_params(tuple(self.base), self.n_layers, self.n_heads, self.ffn_multiple, width)

    def ladder(self) -> list[float]:
        return [float(self.n_params(w)) for w in self.widths]

    # -- cells and rows ------------------------------------------------------------------------------------------
    def cells(self) -> list[tuple[str, float]]:
        """(objective, budget) in order of budget; `rows` lists the largest budget first (its runs take longest)."""
        return [(o, float(b)) for b in sorted(self.budgets) for o in self.objectives]

    def run_overrides(self) -> list[str]:
        """Overrides every run gets on top of `base`: the budget convention and steps derived from budgets."""
        shape = [f"model.n_layers={self.n_layers}", f"model.n_heads={self.n_heads}", f"model.n_kv_heads={self.n_heads}"]
        seed = [f"train.seed={self.seeds[0]}"] if len(self.seeds) == 1 else []
        return [
            *self.base,
            *self.schedule_overrides(),
            *shape,
            *seed,
            f"train.flops_convention={self.convention}",
            "train.max_steps=null",
        ]

    def rows(self, windows: dict[str, list[Any]]) -> list[dict[str, Any]]:
        rows = []
        for objective, budget in sorted(self.cells(), key=lambda c: (-c[1], self.objectives.index(c[0]))):
            for width in windows.get(cell_key(objective, budget), []):
                for seed in self.seeds:
                    row = {"objective": objective, "train.flops_budget": budget, **self.model_keys(int(width))}
                    rows.append({**row, "train.seed": seed} if len(self.seeds) > 1 else row)
        return rows

    # -- placement -----------------------------------------------------------------------------------------------
    def _first_window(self) -> list[int]:
        if self.first_centre is None:  # the bottom of the ladder: the optimum only grows with the budget
            return list(self.widths[: self.sizes_per_budget])
        idx, _ = window(self.ladder(), float(self.n_params(self.first_centre)), self.sizes_per_budget)
        return [self.widths[i] for i in idx]

    def place(
        self, windows: dict[str, list[Any]], finished: dict[str, tuple[list[int], list[float]] | None]
    ) -> tuple[dict[str, list[Any]], list[str]]:
        """Place every cell whose smaller budgets (same objective) have all finished; `finished[key]` holds the
        (widths, losses) of a cell whose runs are all done or failed, None while some are not."""
        placed, notes = dict(windows), []
        budgets = sorted(float(b) for b in self.budgets)
        ladder = self.ladder()
        for objective in self.objectives:
            vertices: list[Vertex] = []
            for j, budget in enumerate(budgets):
                key = cell_key(objective, budget)
                if key not in placed:
                    if self.placement == "all":
                        placed[key] = list(self.widths)
                    elif j == 0:
                        placed[key] = self._first_window()
                    else:
                        centre, how = predict_optimum(budget, vertices, self.prior_exponent)
                        idx, clipped = window(ladder, centre, self.sizes_per_budget)
                        placed[key] = [self.widths[i] for i in idx]
                        note = f"{key}: centred on N*={centre:.3g} ({how})"
                        if clipped:
                            end = "largest" if idx[-1] == len(ladder) - 1 else "smallest"
                            note += f"; WARNING: beyond the {end} size of the ladder, extend `widths`"
                        notes.append(note)
                done = finished.get(key)
                if done is None:
                    if self.placement == "auto":
                        break  # later budgets wait for this one
                    continue
                widths, losses = done
                v = vertex(budget, [self.n_params(w) for w in widths], losses)
                if v is not None:
                    vertices.append(v)
                    if not v.interior:
                        notes.append(f"{key}: WARNING: no interior vertex (lowest loss at N={v.N:.3g}): off-grid")
        return placed, notes

    def provisional(self, windows: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Windows for every cell, those not yet placed moved from the last placed one by the prior exponent."""
        out = dict(windows)
        ladder = self.ladder()
        for objective in self.objectives:
            ref: tuple[float, float] | None = None
            for budget in sorted(float(b) for b in self.budgets):
                key = cell_key(objective, budget)
                if key not in out:
                    if self.placement == "all":
                        out[key] = list(self.widths)
                    elif ref is None:
                        out[key] = self._first_window()
                    else:
                        centre = ref[1] * (budget / ref[0]) ** self.prior_exponent
                        out[key] = [self.widths[i] for i in window(ladder, centre, self.sizes_per_budget)[0]]
                sizes = [self.n_params(w) for w in out[key]]
                ref = (budget, float((min(sizes) * max(sizes)) ** 0.5))
        return out


@functools.lru_cache(maxsize=1024)
def _n_params(base: tuple[str, ...], n_layers: int, n_heads: int, ffn: int, width: int) -> int:
    from llada_lightning.config.compose import compose

    keys = [f"model.n_layers={n_layers}", f"model.n_heads={n_heads}", f"model.n_kv_heads={n_heads}"]
    try:
        cfg = compose([*base, *keys, f"model.d_model={width}", f"model.d_ff={ffn * width}"])
    except ConfigError as err:
        raise ConfigError(f"study design: width {width} with base {list(base)}: {err}") from err
    return param_counts(cfg.model)[0]
