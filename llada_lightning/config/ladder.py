"""The model-size ladder: every `configs/model/*.yaml` as a typed `ModelConfig`."""

from __future__ import annotations

from omegaconf import OmegaConf

from llada_lightning.config.paths import config_root
from llada_lightning.config.schema import ModelConfig


def load_model_config(name: str) -> ModelConfig:
    """One ladder size by name (`cpu-1m`, `smdm-34m`, `llada-8b`, ...)."""
    path = config_root() / "model" / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown model size {name!r}; known: {', '.join(ladder())}")
    merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path))
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def ladder(prefix: str = "") -> dict[str, ModelConfig]:
    """All ladder sizes whose name starts with `prefix`, ordered by non-embedding parameter count."""
    from llada_lightning.flops import param_counts

    names = sorted(p.stem for p in (config_root() / "model").glob("*.yaml") if p.stem.startswith(prefix))
    configs = {name: load_model_config(name) for name in names}
    return dict(sorted(configs.items(), key=lambda kv: (param_counts(kv[1])[0], kv[0])))
