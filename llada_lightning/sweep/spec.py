"""Sweep specs (`configs/sweep/*.yaml`): axes over any config key, expanded into runs with stable identities.

```yaml
name: isoflop-cpu              # runs live in <root>/<name>/<signature>/
root: runs/sweeps
cluster: local                 # default cluster config (configs/cluster/<name>.yaml)
base: [data=embedded, train=cpu, train.max_steps=null]   # fixed overrides for every run
grid:                          # cartesian product, in this order
  objective: [llada, arm]
  train.flops_budget: [1e12, 3e12]   # a compute-budget axis: steps and tokens follow from C and N
  model: [cpu-0.1m, cpu-0.4m]
zip:                           # optional: groups of keys varied together (equal lengths), crossed with the grid
  - {train.lr: [3e-3, 1e-3], train.batch_size: [16, 32]}
share_trunks: false            # true: WSD runs differing only in budget share one trunk (sweep/trunks.py);
                               # always: a WSD run alone in its group too, so budgets added later extend its trunk
```
A budget axis derives each run's steps from its budget and model size: D = C / (FLOPs per token), in the
convention `train.flops_convention` names (C = 6 N D for "6N").
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from llada_lightning.config.compose import compose
from llada_lightning.config.errors import ConfigError
from llada_lightning.config.paths import config_root
from llada_lightning.config.schema import RunConfig
from llada_lightning.config.signature import signature
from llada_lightning.flops import flops_per_token, tokens_per_step, total_steps

SPEC_KEYS = {"name", "root", "cluster", "base", "grid", "zip", "description", "share_trunks"}


@dataclass
class Run:
    """One run of a sweep: its readable name, overrides, validated config and stable signature."""

    name: str
    overrides: list[str]
    cfg: RunConfig
    signature: str
    run_dir: Path
    assignment: dict[str, Any] = field(default_factory=dict)  # the spec's varied keys and their values here

    @property
    def steps(self) -> int:
        return total_steps(self.cfg)

    @property
    def tokens(self) -> int:
        return self.steps * tokens_per_step(self.cfg)

    def flops(self, convention: str) -> float:
        return self.tokens * flops_per_token(self.cfg.model, self.cfg.data.seq_len, convention)


@dataclass
class SweepSpec:
    name: str
    root: str = "runs/sweeps"
    cluster: str = "local"
    base: list[str] = field(default_factory=list)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    zip: list[dict[str, list[Any]]] = field(default_factory=list)
    description: str = ""
    share_trunks: bool = False  # WSD runs differing only in budget share one trunk (sweep/trunks.py)
    trunk_singletons: bool = False  # `share_trunks: always`: a run alone in its group is a trunk and a branch too

    @property
    def directory(self) -> Path:
        return Path(self.root) / self.name


def _fail(source: str, message: str) -> ConfigError:
    return ConfigError(f"sweep spec {source}: {message}")


def load_spec(path_or_name: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read a sweep spec by path or by name in `configs/sweep/`; `overrides` may set `name=`/`root=`/`cluster=`."""
    path = Path(path_or_name)
    if not path.is_file():
        named = config_root() / "sweep" / f"{path_or_name}.yaml"
        if not named.is_file():
            raise ConfigError(f"sweep spec {path_or_name}: no such file (nor configs/sweep/{path_or_name}.yaml)")
        path = named
    try:
        raw = OmegaConf.load(path)
    except Exception as exc:
        raise _fail(str(path), f"not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(raw, DictConfig):
        raise _fail(str(path), "expected a mapping with name, base, grid, zip")
    data: dict[str, Any] = OmegaConf.to_container(raw, resolve=True)  # type: ignore[assignment]
    unknown = set(data) - SPEC_KEYS
    if unknown:
        raise _fail(str(path), f"unknown key(s) {sorted(unknown)}; valid: {sorted(SPEC_KEYS)}")
    for item in overrides:
        key, _, value = item.partition("=")
        if key in ("name", "root", "cluster"):
            data[key] = value
    if not data.get("name"):
        raise _fail(str(path), "needs a name (runs live in <root>/<name>/)")
    grid = data.get("grid") or {}
    zips = data.get("zip") or []
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise _fail(str(path), "grid must map each key to a non-empty list of values")
    if not isinstance(zips, list) or any(not isinstance(z, dict) for z in zips):
        raise _fail(str(path), "zip must be a list of {key: [values]} groups")
    for group in zips:
        lengths = {len(v) if isinstance(v, list) else -1 for v in group.values()}
        if len(lengths) != 1 or -1 in lengths or 0 in lengths:
            raise _fail(str(path), f"zip group {sorted(group)} needs non-empty lists of equal length")
    share = data.get("share_trunks", False)
    if not isinstance(share, bool) and share != "always":
        raise _fail(str(path), f"share_trunks must be true, false or always, not {share!r}")
    base = data.get("base") or []
    if not isinstance(base, list):
        raise _fail(str(path), "base must be a list of overrides (key=value)")
    return SweepSpec(
        name=str(data["name"]),
        root=str(data.get("root", "runs/sweeps")),
        cluster=str(data.get("cluster", "local")),
        base=[str(b) for b in base],
        grid=grid,
        zip=zips,
        description=str(data.get("description", "")),
        share_trunks=bool(share),
        trunk_singletons=share == "always",
    )


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.0e}" if value >= 1e4 or value < 1e-2 else f"{value:g}"
        return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    if isinstance(value, (list, tuple, ListConfig)):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def _override(key: str, value: Any) -> str:
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={'true' if value else 'false'}"
    return f"{key}={_format_value(value) if isinstance(value, (list, tuple)) else value}"


def short_model(name: str) -> str:
    """`smdm-34m` -> `m34`, `cpu-0.4m` -> `c0.4m`; other names unchanged."""
    if name.startswith("smdm-") and name.endswith("m"):
        return "m" + name[5:-1]
    if name.startswith("cpu-"):
        return "c" + name[4:]
    return name


def readable_name(assignment: dict[str, Any], cfg: RunConfig) -> str:
    """`llada-m34-1e18`: objective, model, budget, then any other varied key's value."""
    parts = [cfg.objective.name, short_model(cfg.model.name)]
    if cfg.train.flops_budget is not None:
        parts.append(_format_value(float(cfg.train.flops_budget)))
    skip = {"objective", "objective.name", "model", "model.name", "train.flops_budget"}
    for key, value in assignment.items():
        if key not in skip and not (key.startswith("model.") and "model.name" in assignment):  # the name says it
            parts.append(f"{key.rsplit('.', 1)[-1]}{_format_value(value)}")
    return "-".join(p.replace("/", "_") for p in parts)


def assignments(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every combination of the grid (cartesian) crossed with each zip group (element-wise), in order."""
    keys = list(spec.grid)
    combos: list[dict[str, Any]] = [
        dict(zip(keys, values, strict=True)) for values in itertools.product(*spec.grid.values())
    ]
    for group in spec.zip:
        zkeys = list(group)
        rows = [dict(zip(zkeys, values, strict=True)) for values in zip(*group.values(), strict=True)]
        combos = [{**c, **r} for c in combos for r in rows]
    return combos


def expand(spec: SweepSpec, overrides: Sequence[str] = ()) -> list[Run]:
    """All runs of the sweep, validated, each with its signature and directory; deterministic order."""
    extra = [o for o in overrides if o.partition("=")[0] not in ("name", "root", "cluster")]
    runs: list[Run] = []
    seen: dict[str, str] = {}
    for assignment in assignments(spec):
        run_overrides = [*spec.base, *(_override(k, v) for k, v in assignment.items()), *extra]
        try:
            cfg = compose(run_overrides)
        except ConfigError as exc:
            raise ConfigError(f"sweep {spec.name}, run {assignment}: {exc}") from exc
        sig = signature(cfg)
        if sig in seen:
            raise ConfigError(
                f"sweep {spec.name}: runs {seen[sig]} and {assignment} resolve to the same config; remove one"
            )
        name = readable_name(assignment, cfg)
        seen[sig] = name
        run_dir = spec.directory / sig
        cfg.run_dir = str(run_dir.resolve())  # jobs may start in another working directory
        runs.append(Run(name, run_overrides, cfg, sig, run_dir, assignment))
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = f"{run.name}-{run.signature[:6]}"
    return runs
