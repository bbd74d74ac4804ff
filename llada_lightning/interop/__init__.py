"""Checkpoints in and out of Hugging Face: LLaDA's format, transformers' Llama format and SMDM's releases.

    model, tokenizer, info = load_pretrained("path/to/LLaDA-8B-Base", dtype=torch.bfloat16, device="cuda")
    export_run("runs/llada-cpu-1m-abc", "out/", format="llada")      # or `llada export RUN_DIR OUT_DIR`

The names below are imported on first use, so `llada --help` (which registers `interop.cli`) imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llada_lightning.interop.export import export_run
    from llada_lightning.interop.pretrained import PretrainedInfo, detect_format, load_pretrained

__all__ = ["PretrainedInfo", "detect_format", "export_run", "load_pretrained"]
_HOMES = {
    "export_run": "llada_lightning.interop.export",
    "PretrainedInfo": "llada_lightning.interop.pretrained",
    "detect_format": "llada_lightning.interop.pretrained",
    "load_pretrained": "llada_lightning.interop.pretrained",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
