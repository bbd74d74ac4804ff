"""A run's identity: a short hash of its resolved config, ignoring keys that cannot change its result."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from llada_lightning.config.schema import RunConfig

# Keys that change where or how verbosely a run is written, or how fast it runs, but not its numbers.
NON_RESULT_KEYS = (
    "run_dir",
    "runs_root",
    "data.cache_dir",
    "data.num_workers",
    "train.peak_flops",  # only the logged MFU's denominator
    "train.log_every_n_steps",
    "train.progress_bar",
    "train.ckpt_every_n_steps",
    "train.val_every_n_steps",
    "train.activation_checkpointing",  # recomputes the same block forward in the backward: memory, not numbers
)

# Keys added after runs were stored, with the default that reproduces those runs: a key at this default is left
# out of the signature, so existing run directories keep their names (and relaunches reuse them).
ADDED_KEYS: dict[str, Any] = {
    "data.unique_tokens": None,
    "objective.sft_normalization": "sample",
    "model.rope_table_dtype": "float32",
    "data.paths": None,
    "data.weights": None,
}
# Whole groups added later (dotted: nested ones too): left out of the signature while every key holds its default.
ADDED_GROUPS = ("sft", "train.fsdp")


def result_dict(cfg: RunConfig) -> dict[str, Any]:
    """The config as a plain dict without the keys in NON_RESULT_KEYS, nor those of ADDED_KEYS at their default.

    `model.causal` is put back, derived from the objective: runs stored it until it became derived, and their
    signatures (hence run directories) must stay the same.
    """
    from llada_lightning.objectives.registry import OBJECTIVES

    tree: dict[str, Any] = dataclasses.asdict(cfg)
    objective = OBJECTIVES.get(cfg.objective.name)
    tree["model"]["causal"] = bool(objective is not None and objective.causal)
    for dotted in NON_RESULT_KEYS:
        _pop(tree, dotted)
    for dotted, default in ADDED_KEYS.items():
        _pop(tree, dotted, only_if=default)
    defaults = dataclasses.asdict(RunConfig())
    for group in ADDED_GROUPS:
        default: Any = defaults
        for key in group.split("."):
            default = default[key]
        _pop(tree, group, only_if=default)
    return tree


_ANY = object()


def _pop(tree: dict[str, Any], dotted: str, only_if: Any = _ANY) -> None:
    """Remove the dotted key from `tree` (when `only_if` is given: only while it holds that value)."""
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[key]
    if leaf in node and (only_if is _ANY or node[leaf] == only_if):
        del node[leaf]


def signature(cfg: RunConfig, length: int = 10) -> str:
    """Stable short hash of everything that determines the run's result."""
    blob = json.dumps(result_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def config_diff(a: RunConfig, b: RunConfig) -> list[str]:
    """Dotted keys whose result-relevant values differ between two configs."""
    out: list[str] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                walk(x.get(key), y.get(key), f"{prefix}.{key}" if prefix else key)
        elif x != y:
            out.append(f"{prefix} ({x!r} != {y!r})")

    walk(result_dict(a), result_dict(b), "")
    return out
