"""Where the YAML config groups live: inside an installed wheel, or in the source checkout."""

from __future__ import annotations

import os
from pathlib import Path

from llada_lightning.config.errors import ConfigError

GROUPS = ("model", "data", "objective", "train")


def config_root() -> Path:
    """The `configs/` folder: $LLADA_CONFIGS, the wheel's bundled copy, or the repository's."""
    env = os.environ.get("LLADA_CONFIGS")
    if env:
        if not Path(env).is_dir():
            raise ConfigError(f"LLADA_CONFIGS={env}: no such directory; unset it to use the bundled configs/")
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    bundled = here / "_configs"
    if bundled.is_dir():
        return bundled
    return here.parent / "configs"


def group_options(group: str) -> list[str]:
    """Names of the YAML files available for one config group (without the .yaml suffix)."""
    folder = config_root() / group
    return sorted(p.stem for p in folder.glob("*.yaml"))
