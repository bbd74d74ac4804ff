"""The `data-constrained` design: both objectives trained for 1 to 64+ epochs on a fixed budget of unique tokens,
the regime where masked diffusion is reported to overtake autoregression (Prabhudesai et al. 2025, "Diffusion Beats
Autoregressive in Data-Constrained Settings"; Ni et al. 2025), analysed with Muennighoff et al. 2023's law.

Runs, for each objective, size (`widths`, the IsoFLOP ladder's shapes) and seed:
- repeated data: for each U in `unique_tokens` and each e in `epochs`, `data.unique_tokens=U` (a fixed, seeded subset,
  the same for both objectives and every size; nested across U) trained for e epochs (D = e U tokens);
- fresh data (`fresh: true`): the same D = e U with e >= 2 on the whole training split, read once (a single-epoch
  twin of each repeated run while D fits in the split), which gives the law's stage 1 its single-epoch points and
  shows the cost of repetition at equal (N, D) directly.
Runs of one (objective, size, seed, U) differ only in their length, so with WSD they share one trunk (the stable
phase is trained once, each epoch count decays off it: sweep/trunks.py). The analysis is data_constrained_report.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.study.design import Design, register
from llada_lightning.study.isoflop import IsoFLOPDesign, _n_params, size_label

FRESH = "fresh"  # the cell of single-epoch runs on the whole split


def u_key(objective: str, unique_tokens: int | None) -> str:
    """The key of one (objective, U) cell in `study.json`: `llada@U=16384`, or `arm@fresh`."""
    return f"{objective}@{FRESH}" if unique_tokens is None else f"{objective}@U={int(unique_tokens)}"


@register("data-constrained")
@dataclasses.dataclass
class DataConstrainedDesign(Design):
    """Loss against epochs of repeated data, per objective, unique-token budget and size."""

    QUICK = {
        "name": "data-constrained-quick",
        "seeds": [0],
        "unique_tokens": [2048, 8192],
        "epochs": [1, 4, 16],
        "widths": [16, 24],
        "n_bootstrap_cap": 20,  # a smoke test: its intervals are marked unreliable (80 are needed at 95%)
        "base": IsoFLOPDesign.QUICK["base"],
    }

    name: str = "data-constrained"
    objectives: list[str] = dataclasses.field(default_factory=lambda: ["llada", "arm"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    # unique-token budgets: 4, 16 and 64 steps' worth (1,024 tokens a step) of this corpus's 2.5M training tokens
    unique_tokens: list[int] = dataclasses.field(default_factory=lambda: [4096, 16384, 65536])
    epochs: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    widths: list[int] = dataclasses.field(default_factory=lambda: [16, 32, 64])
    n_layers: int = 2
    n_heads: int = 2
    ffn_multiple: int = 4
    fresh: bool = True
    n_bootstrap_cap: int | None = None  # at most this many bootstrap refits of the two-stage law (None: --bootstrap)
    base: list[str] = dataclasses.field(default_factory=lambda: list(IsoFLOPDesign().base))

    def validate(self, source: str) -> None:
        super().validate(source)
        us = self.unique_tokens
        if (
            not us
            or any(isinstance(u, bool) or not isinstance(u, int) or u <= 0 for u in us)
            or len(set(us)) != len(us)
        ):
            raise ConfigError(f"{source}: unique_tokens={us} must be distinct positive token counts")
        es = self.epochs
        if not es or any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in es) or len(set(es)) != len(es):
            raise ConfigError(f"{source}: epochs={es} must be distinct integers >= 1")
        if 1 not in es:
            raise ConfigError(f"{source}: epochs={es} must include 1 (the single-epoch points of the law's stage 1)")
        if not self.widths or sorted(set(self.widths)) != list(self.widths):
            raise ConfigError(f"{source}: widths={self.widths} must be increasing positive integers")
        if not isinstance(self.fresh, bool):
            raise ConfigError(f"{source}: fresh={self.fresh!r} must be true or false")
        if self.n_bootstrap_cap is not None and (not isinstance(self.n_bootstrap_cap, int) or self.n_bootstrap_cap < 0):
            raise ConfigError(f"{source}: n_bootstrap_cap={self.n_bootstrap_cap!r} must be null or an integer >= 0")
        tokens = self._tokens_per_step()
        for u in us:
            if u % tokens:
                raise ConfigError(
                    f"{source}: unique_tokens {u} is not a whole number of steps ({tokens} tokens each, "
                    "train.batch_size x data.seq_len of `base`); use a multiple of it"
                )
        for width in self.widths:
            self.n_params(width)  # the base and every width compose

    # -- sizes and lengths -----------------------------------------------------------------------------------------
    def _shape(self) -> list[str]:
        return [f"model.n_layers={self.n_layers}", f"model.n_heads={self.n_heads}", f"model.n_kv_heads={self.n_heads}"]

    def _tokens_per_step(self) -> int:
        from llada_lightning.config.compose import compose
        from llada_lightning.flops import tokens_per_step

        try:
            return int(tokens_per_step(compose([*self.base, *self._shape()])))
        except ConfigError as err:
            raise ConfigError(f"study design {self.kind}: base {self.base}: {err}") from err

    def n_params(self, width: int) -> int:
        return _n_params(tuple(self.base), self.n_layers, self.n_heads, self.ffn_multiple, width)

    def model_keys(self, width: int) -> dict[str, Any]:
        return {
            "model.name": size_label(self.n_params(width)),
            "model.d_model": width,
            "model.d_ff": self.ffn_multiple * width,
        }

    def fresh_tokens(self) -> list[int]:
        """The D of the fresh-data runs: every e U with e >= 2 (e = 1 is the repeated runs' own single epoch)."""
        return sorted({e * u for u in self.unique_tokens for e in self.epochs if e >= 2}) if self.fresh else []

    # -- cells and rows --------------------------------------------------------------------------------------------
    def cells(self) -> list[tuple[str, float]]:
        out = [(o, float(u)) for u in sorted(self.unique_tokens) for o in self.objectives]
        return out + ([(o, float("inf")) for o in self.objectives] if self.fresh else [])

    def cell_of(self, cfg: Any) -> str:
        return u_key(cfg.objective.name, cfg.data.unique_tokens)

    def run_overrides(self) -> list[str]:
        seed = [f"train.seed={self.seeds[0]}"] if len(self.seeds) == 1 else []
        return [*self.base, *self.schedule_overrides(), *self._shape(), *seed, "train.flops_budget=null"]

    def rows(self, windows: dict[str, list[Any]]) -> list[dict[str, Any]]:
        tokens = self._tokens_per_step()
        lengths = {u: [e * u for e in sorted(self.epochs)] for u in self.unique_tokens}
        rows = []
        for objective in self.objectives:
            for u, ds in [*((u, lengths[u]) for u in sorted(self.unique_tokens)), (None, self.fresh_tokens())]:
                for width in windows.get(u_key(objective, u), []):
                    for d in ds:
                        for seed in self.seeds:
                            row = {
                                "objective": objective,
                                "data.unique_tokens": u,
                                "train.max_steps": d // tokens,
                                **self.model_keys(int(width)),
                            }
                            rows.append({**row, "train.seed": seed} if len(self.seeds) > 1 else row)
        return rows

    def place(self, windows: dict[str, list[Any]], finished: Any) -> tuple[dict[str, list[Any]], list[str]]:
        """Every size in every cell at once (nothing waits): the grid is fixed by the parameters."""
        placed = dict(windows)
        for objective in self.objectives:
            for u in [*sorted(self.unique_tokens), *([None] if self.fresh else [])]:
                placed.setdefault(u_key(objective, u), list(self.widths))
        return placed, []

    def analyze(self, directory: Path, runs: list[Any], **kwargs: Any) -> tuple[dict, dict[str, Path]]:
        from llada_lightning.study.data_constrained_report import report_data_constrained

        return report_data_constrained(self, directory, runs, **kwargs)
