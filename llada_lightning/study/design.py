"""Study designs: which runs a study trains, from a few parameters; registered by name in `DESIGNS`.

A design is a dataclass of JSON-able parameters (a YAML file names its design and sets any of them:
`design: isoflop` then `budgets: [...]`, `widths: [...]`, ...). It turns those parameters, plus the windows placed
so far (`placement.py`), into sweep rows: one dict of config keys per run, which `sweep/` launches and tracks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from llada_lightning.config.errors import ConfigError
from llada_lightning.training.lr_schedule import LR_SCHEDULES

DESIGNS: dict[str, type[Design]] = {}


def register(name: str) -> Callable[[type[Design]], type[Design]]:
    """Class decorator: make a design available as `llada study NAME` and `design: NAME` in a YAML file."""

    def add(cls: type[Design]) -> type[Design]:
        cls.kind = name
        DESIGNS[name] = cls
        return cls

    return add


@dataclasses.dataclass
class Design:
    """The parameters every design has; subclasses add theirs and implement `cells`, `rows` and `place`."""

    kind: ClassVar[str] = ""
    QUICK: ClassVar[dict[str, Any]] = {}  # the parameters `--quick` replaces: a smoke test of about a minute

    name: str = "study"  # the study's directory: <out>/<name>/
    objectives: list[str] = dataclasses.field(default_factory=lambda: ["llada", "arm"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    base: list[str] = dataclasses.field(default_factory=list)  # run overrides shared by every run
    # WSD, not cosine: no worse at equal (N, D) on this machine (experiments/wsd-vs-cosine), and its runs of one
    # size share their stable phase (sweep/trunks.py; Hägele et al. 2024, arXiv 2405.18392)
    lr_schedule: str = "wsd"
    warmup_steps: int = 10  # fixed in steps, for every run and schedule (WSD branches must share it)
    share_trunks: bool = True  # with lr_schedule=wsd: runs differing only in budget branch off one trunk

    def params(self) -> dict[str, Any]:
        """The design's parameters, JSON-able: what `study.json` records and a relaunch compares."""
        return {"design": self.kind, **dataclasses.asdict(self)}

    def validate(self, source: str) -> None:
        """A one-line ConfigError naming `source` and the parameter when a value cannot work."""
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"{source}: name={self.name!r} must be a plain directory name")
        if not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"{source}: objectives={self.objectives} must be a non-empty list without repeats")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or not all(isinstance(s, int) for s in self.seeds):
            raise ConfigError(f"{source}: seeds={self.seeds} must be a non-empty list of distinct integers")
        if not isinstance(self.base, list) or not all(isinstance(b, str) and "=" in b for b in self.base):
            raise ConfigError(f"{source}: base must be a list of key=value run overrides")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"{source}: lr_schedule={self.lr_schedule!r} is not one of: {', '.join(LR_SCHEDULES)}")
        if not isinstance(self.warmup_steps, int) or isinstance(self.warmup_steps, bool) or self.warmup_steps < 0:
            raise ConfigError(f"{source}: warmup_steps={self.warmup_steps!r} must be a non-negative integer")
        if not isinstance(self.share_trunks, bool):
            raise ConfigError(f"{source}: share_trunks={self.share_trunks!r} must be true or false")

    @property
    def shares_trunks(self) -> bool:
        """Whether the study's sweep shares WSD trunks (`share_trunks` applies to the WSD schedule only)."""
        return self.share_trunks and self.lr_schedule == "wsd"

    def schedule_overrides(self) -> list[str]:
        """The run overrides of the LR schedule: after `base`, so the design's parameters decide it."""
        return [
            f"train.lr_schedule={self.lr_schedule}",
            "train.warmup_fraction=0",
            f"train.warmup_min_steps={self.warmup_steps}",
        ]

    def cells(self) -> list[tuple[str, float]]:
        """The (objective, budget) cells of the study, in launch order."""
        raise NotImplementedError

    def rows(self, windows: dict[str, list[Any]]) -> list[dict[str, Any]]:
        """Sweep rows (config key -> value) of every placed cell; `windows` maps a cell key to its sizes."""
        raise NotImplementedError

    def provisional(self, windows: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Windows for every cell, those not placed yet guessed (for `--dry-run`); default: the placed ones."""
        return windows

    def place(self, windows: dict[str, list[Any]], finished: Any) -> tuple[dict[str, list[Any]], list[str]]:
        """Windows for the cells that can be placed now (given the table of finished runs), and notes."""
        raise NotImplementedError

    def cell_of(self, cfg: Any) -> str:
        """The cell a run's config belongs to (its key in `windows`)."""
        return cell_key(cfg.objective.name, float(cfg.train.flops_budget))

    def size_of(self, cfg: Any) -> int:
        """The entry of its cell's window a run's config trains (the ladder's width)."""
        return int(cfg.model.d_model)

    def analyze(self, directory: Path, runs: list[Any], **kwargs: Any) -> tuple[dict, dict[str, Path]]:
        """The study's analysis and report of its finished `runs` (default: the IsoFLOP fits, report.py)."""
        from llada_lightning.study.report import report

        return report(directory, runs, **kwargs)


def cell_key(objective: str, budget: float) -> str:
    """The key of one (objective, budget) cell in `study.json`: `llada@6e+11`."""
    return f"{objective}@{budget:.6g}"


def _fields(cls: type[Design]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def build(kind: str, params: dict[str, Any], source: str) -> Design:
    """The design `kind` with `params`: a one-line error for an unknown design or parameter, or a bad value."""
    if kind not in DESIGNS:
        raise ConfigError(f"{source}: no such study design {kind!r}; choose one of: {', '.join(sorted(DESIGNS))}")
    cls = DESIGNS[kind]
    unknown = sorted(set(params) - _fields(cls))
    if unknown:
        raise ConfigError(
            f"{source}: unknown parameter(s) {unknown} of design {kind}; valid: {', '.join(sorted(_fields(cls)))}"
        )
    try:
        design = cls(**params)
    except TypeError as err:
        raise ConfigError(f"{source}: {err}") from err
    design.validate(source)
    return design


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = OmegaConf.load(path)
    except Exception as exc:  # yaml errors and friends: the file and the first line, not a traceback
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from exc
    if not isinstance(raw, DictConfig):
        raise ConfigError(f"{path}: expected a mapping (design: NAME, then its parameters)")
    return OmegaConf.to_container(raw, resolve=True)  # type: ignore[return-value]


def load_design(ref: str | None = None, *, quick: bool = False, sets: Sequence[str] = ()) -> Design:
    """A design by registered name (default `isoflop`) or YAML file; `quick` applies the design's QUICK preset;
    `sets` are `param=value` strings (`--set budgets=[1e11,3e11]`), parsed as YAML values."""
    from llada_lightning.study import data_constrained, isoflop, schedules  # noqa: F401  (registers the designs)

    ref = ref or "isoflop"
    path = Path(ref)
    if ref.endswith((".yaml", ".yml")):
        if not path.is_file():
            raise ConfigError(f"study design {ref}: no such file")
        params = _read_yaml(path)
        kind = str(params.pop("design", "") or "")
        if not kind:
            raise ConfigError(f"{path}: names no design (add `design: NAME`, one of: {', '.join(sorted(DESIGNS))})")
        source = str(path)
    else:
        kind, params, source = ref, {}, f"study design {ref}"
        if kind not in DESIGNS:
            raise ConfigError(f"no such study design {ref!r}; choose one of: {', '.join(sorted(DESIGNS))} (or a .yaml)")
    if quick:
        params = {**params, **DESIGNS[kind].QUICK}
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--set {item!r}: write PARAM=VALUE (e.g. --set budgets=[1e11,3e11])")
        params[key] = _yaml_value(value)
    return build(kind, params, source)


def _yaml_value(text: str) -> Any:
    """A `--set` value as YAML reads it, with OmegaConf's loader (which reads `1e9` as a number, as config files do)."""
    try:
        return OmegaConf.to_container(OmegaConf.create(f"v: {text}"), resolve=True)["v"]  # type: ignore[index]
    except Exception as err:  # omegaconf's and yaml's errors
        raise ConfigError(f"--set value {text!r} is not valid YAML ({str(err).splitlines()[0]})") from err
