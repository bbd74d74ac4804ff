"""Checkpoint weight files, read lazily and written as Hugging Face writes them.

Reading (`WeightFiles`): one `model.safetensors`, shards listed by `model.safetensors.index.json`, a bare
`.safetensors` file (SMDM's releases), or a torch pickle (`pytorch_model.bin`, `.pth`, `.pt`, loaded with
`mmap=True, weights_only=True`; a training checkpoint's `{"model": ...}` / `{"state_dict": ...}` is unwrapped).
Names and shapes come from the file headers; a tensor is read only when asked for, so an 8B checkpoint is never
held twice (safetensors maps the file; `safe_open`).

Writing (`write_safetensors`): `model.safetensors`, or shards `model-0000i-of-0000n.safetensors` with
`model.safetensors.index.json` ({"metadata": {"total_size"}, "weight_map"}) when the weights exceed
`max_shard_bytes`; every file carries the metadata {"format": "pt"} that transformers requires.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from llada_lightning.config.errors import ConfigError
from llada_lightning.data.tokenizer import first_line
from llada_lightning.io import atomic_write, atomic_write_json

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILES = ("pytorch_model.bin", "model.pth", "model.pt")
TORCH_INDEX = "pytorch_model.bin.index.json"
TORCH_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")
DEFAULT_SHARD_BYTES = 5 * 2**30  # transformers' default max_shard_size ("5GB")


@dataclass
class WeightFiles:
    """Every tensor name of a checkpoint -> the file that holds it; tensors are read on demand."""

    files: dict[str, Path]  # name -> file
    source: Path
    _loaded: dict[Path, Mapping[str, Tensor]] = field(default_factory=dict, repr=False)

    @property
    def names(self) -> set[str]:
        return set(self.files)

    def shape(self, name: str) -> tuple[int, ...]:
        path = self.files[name]
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as fh:
                return tuple(fh.get_slice(name).get_shape())
        return tuple(self._pickle(path)[name].shape)

    def get(self, name: str, dtype: torch.dtype | None = None, device: torch.device | str = "cpu") -> Tensor:
        """The tensor `name`, converted to `dtype` (None: as stored) on `device`."""
        path = self.files[name]
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as fh:
                tensor = fh.get_tensor(name)
        else:
            tensor = self._pickle(path)[name]
        return tensor.to(device=device, dtype=dtype or tensor.dtype)

    def _pickle(self, path: Path) -> Mapping[str, Tensor]:
        if path not in self._loaded:
            self._loaded[path] = _load_pickle(path)
        return self._loaded[path]


def find_weights(path: Path) -> WeightFiles:
    """The weights of a checkpoint directory (safetensors preferred, sharded or not) or of one weight file."""
    if path.is_file():
        return _single_file(path)
    for index_name in (SAFETENSORS_INDEX, TORCH_INDEX):
        index = path / index_name
        if index.is_file():
            return _from_index(index)
    candidates = [path / SAFETENSORS, *(path / name for name in TORCH_FILES)]
    found = [p for p in candidates if p.is_file()]
    if not found:
        loose = sorted(p.name for p in path.glob("*.safetensors"))
        if len(loose) == 1:
            return _single_file(path / loose[0])
        raise ConfigError(
            f"{path}: no weights found (looked for {SAFETENSORS}, {SAFETENSORS_INDEX}, {', '.join(TORCH_FILES)}); "
            "pass a Hugging Face model directory or a single weight file"
        )
    return _single_file(found[0])


def _single_file(path: Path) -> WeightFiles:
    if path.suffix == ".safetensors":
        names = _safetensors_names(path)
    elif path.suffix in TORCH_SUFFIXES:
        files = WeightFiles({}, path)
        names = list(files._pickle(path))
        files.files = dict.fromkeys(names, path)
        return files
    else:
        raise ConfigError(f"{path}: unknown weight file type {path.suffix!r}; expected .safetensors, .bin or .pth")
    return WeightFiles(dict.fromkeys(names, path), path)


def _from_index(index: Path) -> WeightFiles:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{index}: not a readable weight index (no weight_map: {exc}); restore the file") from exc
    files = {name: index.parent / file for name, file in weight_map.items()}
    for shard in sorted(set(files.values())):
        if not shard.is_file():
            raise ConfigError(f"{index} lists the shard {shard.name}, which is missing; download or restore it")
    return WeightFiles(files, index.parent)


def _safetensors_names(path: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            return list(fh.keys())
    except Exception as exc:  # safetensors raises its own SafetensorError for truncated or foreign files
        raise ConfigError(f"{path}: not a readable safetensors file ({first_line(exc)}); restore it") from exc


def _load_pickle(path: Path) -> Mapping[str, Tensor]:
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # unpickling fails in many ways: name the file, not a traceback
        raise ConfigError(f"{path}: not a readable torch checkpoint ({first_line(exc)}); restore it") from exc
    for key in ("model", "state_dict", "module"):  # a training checkpoint (lit_gpt/fabric: {"model": ...})
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ConfigError(f"{path}: holds no state dict of tensors; pass a weight file")
    return obj


def tensor_bytes(tensor: Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def shard(tensors: Mapping[str, Tensor], max_shard_bytes: int) -> list[dict[str, Tensor]]:
    """Split `tensors` (in order) into groups of at most `max_shard_bytes` (a larger tensor gets its own)."""
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        n = tensor_bytes(tensor)
        if shards[-1] and size + n > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += n
    return shards


def write_safetensors(out_dir: Path, tensors: Mapping[str, Tensor], max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> None:
    """Write `tensors` as transformers' `save_pretrained` does (one file or shards + index), each file atomically."""
    from safetensors.torch import save_file

    contiguous = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    groups = shard(contiguous, max_shard_bytes)
    if len(groups) == 1:
        atomic_write(out_dir / SAFETENSORS, lambda tmp: save_file(groups[0], tmp, metadata={"format": "pt"}))
        return
    weight_map = {}
    for i, group in enumerate(groups, start=1):
        name = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        atomic_write(out_dir / name, lambda tmp, g=group: save_file(g, tmp, metadata={"format": "pt"}))
        weight_map.update(dict.fromkeys(group, name))
    total = sum(tensor_bytes(t) for t in contiguous.values())
    atomic_write_json(out_dir / SAFETENSORS_INDEX, {"metadata": {"total_size": total}, "weight_map": weight_map})
