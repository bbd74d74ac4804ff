"""Compose a `RunConfig`: dataclass defaults <- YAML groups <- YAML files <- dotlist overrides.

Overrides look like Hydra's: `model=cpu-1m` picks a size of the ladder (config/ladder.py; or a path to any YAML
file), `model.n_layers=4` sets one key, and a bare `path/to/run.yaml` merges a whole run config.
Every failure is a `ConfigError` with one line naming the key and the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.ladder import LADDER, ladder
from llada_lightning.config.paths import GROUPS, config_root, group_options
from llada_lightning.config.schema import RunConfig

DEFAULT_GROUPS: dict[str, str] = {"model": "cpu-1m", "data": "embedded", "objective": "llada", "train": "cpu"}


def _group_file(group: str, choice: str) -> Path:
    candidate = Path(choice)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    path = config_root() / group / f"{choice}.yaml"
    if not path.is_file():
        options = ", ".join(group_options(group))
        raise ConfigError(f"{group}={choice}: no such {group} config; choose one of: {options}")
    return path


def _group_piece(group: str, choice: str) -> DictConfig:
    """`{group: ...}` for a group choice: a ladder size (`model=NAME`), a YAML file path, or `configs/<group>/`."""
    candidate = Path(choice)
    if group == "model" and not (candidate.suffix in (".yaml", ".yml") and candidate.is_file()):
        if choice not in LADDER:
            raise ConfigError(f"model={choice}: no such model size; choose one of: {', '.join(ladder())}")
        return OmegaConf.create({"model": dataclasses.asdict(LADDER[choice])})
    path = _group_file(group, choice)
    return _without_derived(OmegaConf.create({group: _load_yaml(path)}), str(path))


@functools.lru_cache(maxsize=1)
def _template() -> DictConfig:
    """The typed schema tree; merges copy it, so one instance serves every composition (sweeps compose many)."""
    return OmegaConf.structured(RunConfig)


def _load_yaml(path: Path) -> DictConfig:
    stat = path.stat()
    return _load_yaml_cached(path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _load_yaml_cached(path: Path, mtime_ns: int, size: int) -> DictConfig:
    try:
        loaded = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError and friends: report the file, not a traceback
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from exc
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: expected a mapping of keys to values; fix the file")
    return loaded


def split_overrides(overrides: Sequence[str]) -> tuple[dict[str, str], list[Path], list[str]]:
    """Sort command-line tokens into group choices, whole-config files, and dotlist key=value pairs."""
    groups: dict[str, str] = {}
    files: list[Path] = []
    dotlist: list[str] = []
    for token in overrides:
        if "=" not in token:
            if token.endswith((".yaml", ".yml")):
                path = Path(token)
                if not path.is_file():
                    raise ConfigError(f"{token}: no such config file; check the path")
                files.append(path)
                continue
            raise ConfigError(f"{token!r} is not an override; write key=value (e.g. train.max_steps=100)")
        key, value = token.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"{token!r} has no key; write key=value (e.g. model.n_layers=4)")
        if key in GROUPS:
            groups[key] = value
        else:
            dotlist.append(f"{key}={value}")
    return groups, files, dotlist


def _explain(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None) or ""
    msg = str(exc).splitlines()[0]
    if isinstance(exc, ConfigKeyError) or "not in struct" in msg or "Key '" in msg and "not in" in msg:
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        hint = f"; see `llada config` for the valid keys{' of ' + parent if parent else ''}"
        return f"unknown config key {key!r}{hint}"
    if isinstance(exc, ValidationError):
        return f"{key}: {msg}; give a value of the right type"
    return f"{key}: {msg}" if key else msg


# Keys that runs written by earlier versions stored but that are now derived: `model.causal` follows the
# objective (objectives/registry.py). Dropped from saved configs, refused as overrides.
DERIVED_KEYS = {("model", "causal"): "the attention follows objective.name (arm: causal, llada: bidirectional)"}


def _without_derived(piece: Any, where: str | None) -> Any:
    """`piece` without DERIVED_KEYS; `where` set (an override or file): a ConfigError naming the key instead."""
    if not isinstance(piece, DictConfig):
        return piece
    for (group, key), why in DERIVED_KEYS.items():
        node = piece.get(group)
        if isinstance(node, DictConfig) and key in node:
            if where is not None:
                raise ConfigError(f"{group}.{key} is not a setting ({why}); remove it from {where}")
            piece = copy.deepcopy(piece)  # never edit a cached tree
            piece[group].pop(key)
    return piece


def _dotlist_value(dotlist: list[str], key: str) -> str | None:
    """The last value given to `key` in a dotlist, or None."""
    values = [item.split("=", 1)[1] for item in dotlist if item.split("=", 1)[0] == key]
    return values[-1] if values else None


def compose_dict(overrides: Sequence[str] = (), base: Any = None) -> DictConfig:
    """The merged (not yet validated) config as an OmegaConf tree."""
    groups, files, dotlist = split_overrides(overrides)
    parent = _dotlist_value(dotlist, "sft.parent")
    if parent not in (None, "null") and base is None:  # an SFT run: it starts from its parent's config
        from llada_lightning.sft.parent import parent_base

        base = parent_base(parent, _dotlist_value(dotlist, "sft.chat_template") or "llada")
        groups.setdefault("train", "sft")  # LLaDA's SFT schedule over the parent's train group
    choices = {**DEFAULT_GROUPS, **groups}
    try:
        if isinstance(base, dict):
            base = OmegaConf.create(base)
        pieces: list[Any] = [] if base is None else [_without_derived(base, None)]
        for group in GROUPS:
            if group in choices and (base is None or group in groups):
                pieces.append(_group_piece(group, choices[group]))
        pieces.extend(_without_derived(_load_yaml(path), str(path)) for path in files)
        if dotlist:
            pieces.append(_without_derived(OmegaConf.from_dotlist(dotlist), "the command line"))
        cfg = OmegaConf.merge(_template(), *pieces)  # one merge: later pieces win
    except OmegaConfBaseException as exc:
        raise ConfigError(_explain(exc)) from exc
    return cfg  # type: ignore[return-value]


def compose(overrides: Sequence[str] = (), base: Any = None, *, check: bool = True) -> RunConfig:
    """Build and validate a `RunConfig` from overrides (see the module docstring)."""
    from llada_lightning.config.validation import validate

    tree = compose_dict(overrides, base)
    try:
        cfg: RunConfig = OmegaConf.to_object(tree)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        raise ConfigError(_explain(exc)) from exc
    if check:
        validate(cfg)
    return cfg


def to_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def load_run_config(path: Path | str) -> RunConfig:
    """Read a resolved config written by `llada train` (config.yaml in a run directory)."""
    return compose([], base=_load_yaml(Path(path)), check=False)
