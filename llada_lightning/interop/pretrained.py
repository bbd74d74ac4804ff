"""`load_pretrained`: a published checkpoint as this package's backbone, with its tokenizer and what it is.

The format is read from `config.json` (its `model_type` / `architectures`), or, for a directory or file without
one, from the weight names (SMDM's releases). Every problem is one `ConfigError` naming the file, field or
tensor. The model comes back as a `models.Transformer` in eval mode, so `sampling.generate`, `likelihood`,
`llada eval` and the lm-eval adapter serve it unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import ModelConfig
from llada_lightning.interop import llada, llama, smdm
from llada_lightning.interop.mapping import load_backbone
from llada_lightning.interop.weights import WeightFiles, find_weights
from llada_lightning.models import Transformer

CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
GENERATION_CONFIG = "generation_config.json"  # LLaDA-8B keeps its BOS id (126080) there, not in config.json
OBJECTIVES = ("llada", "arm")
# mask tokens looked up in a tokenizer when a Llama checkpoint is loaded as LLaDA without a mask_token_id
MASK_TOKENS = ("<|mdm_mask|>", "<mask>", "[MASK]", "<|mask|>")


@dataclass(frozen=True)
class PretrainedInfo:
    """What `load_pretrained` found: the format, how to use the model, and where it came from."""

    format: str  # "llada" | "llama" | "smdm"
    objective: str  # "llada" (bidirectional, mask predictor) | "arm" (causal)
    mask_id: int | None  # the mask token fed to a LLaDA model; None for an ARM
    eos_id: int | None
    bos_id: int | None
    config: ModelConfig
    source: Path
    architecture: str  # config.json's architectures[0], or "SMDM lit_gpt"
    dtype: torch.dtype
    chat_template: str | None  # tokenizer_config.json's chat_template, if any

    @property
    def causal(self) -> bool:
        return self.objective == "arm"


def read_config(path: Path) -> dict[str, Any] | None:
    """config.json of a directory as a dict (None when there is none); ConfigError when it cannot be read."""
    file = path / CONFIG
    if not file.is_file():
        return None
    try:
        meta = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{file}: not readable JSON ({exc}); restore the file") from exc
    if not isinstance(meta, dict):
        raise ConfigError(f"{file}: not a JSON object; restore the file")
    return meta


def detect_format(path: str | Path) -> str:
    """ "llada", "llama" or "smdm" for a checkpoint directory or file; ConfigError naming what is unknown."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory; pass a Hugging Face model directory or a weight file")
    meta = read_config(path) if path.is_dir() else None
    if meta is not None:
        if llada.is_llada(meta):
            return "llada"
        if llama.is_llama(meta):
            return "llama"
        if smdm.is_lit_config(meta) and smdm.is_smdm(find_weights(path).names):
            return "smdm"
        raise ConfigError(
            f"{path / CONFIG}: unknown architecture (model_type={meta.get('model_type')!r}, architectures="
            f"{meta.get('architectures')}); supported: LLaDA (LLaDAModelLM), Llama (LlamaForCausalLM), SMDM files"
        )
    files = find_weights(path)
    if smdm.is_smdm(files.names):
        return "smdm"
    sample = sorted(files.names)[:2]
    raise ConfigError(
        f"{path}: no {CONFIG} and the weight names ({', '.join(sample)}, ...) are not SMDM's; "
        "a LLaDA or Llama checkpoint needs its config.json beside the weights"
    )


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ConfigError(f"dtype={dtype!r} is not a floating-point torch dtype (float32, bfloat16, float16)")
    return value


def load_pretrained(
    path: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    objective: str | None = None,
    mask_id: int | None = None,
    n_heads: int | None = None,
) -> tuple[Transformer, Tokenizer | None, PretrainedInfo]:
    """Load a LLaDA (Hugging Face), Llama (transformers) or SMDM checkpoint as `(model, tokenizer, info)`.

    Args:
        path: a model directory (config.json + model.safetensors, or shards with their index, or
            pytorch_model.bin), or one SMDM weight file.
        dtype: the parameters' dtype (e.g. torch.bfloat16 for an 8B model); None keeps the stored dtype.
        device: where the weights go (default: torch's default device). "meta" checks the checkpoint against
            its config and returns a model of the right shapes without reading any weight.
        objective: "llada" or "arm"; default: the format's (LLaDA -> llada, Llama -> arm, SMDM -> by its
            embedding). A Llama checkpoint loaded with "llada" runs bidirectionally.
        mask_id: the mask token when `objective="llada"` for a Llama checkpoint (default: config.json's
            `mask_token_id`, else a mask token of the tokenizer).
        n_heads: the number of heads of an SMDM checkpoint whose size is not in SMDM's table.

    Loading is lazy: the model is built on the meta device and each tensor is assigned as it is read
    (safetensors memory-mapped), so peak memory is about one copy of the weights in `dtype`.
    """
    source = Path(path).expanduser()
    fmt = detect_format(source)
    if objective is not None and objective not in OBJECTIVES:
        raise ConfigError(f"objective={objective!r}: choose one of {', '.join(OBJECTIVES)}")
    torch_dtype = _dtype(dtype)
    target = torch.device(device) if device is not None else torch.get_default_device()
    home = source if source.is_dir() else source.parent
    tokenizer = _tokenizer(home)
    tok_config = _tokenizer_config(home)
    name = source.name.removesuffix(".safetensors") or "pretrained"
    meta = read_config(source) if source.is_dir() and fmt != "smdm" else None

    if fmt == "llada":
        assert meta is not None
        if objective == "arm":
            raise ConfigError("objective='arm': a LLaDA checkpoint is a bidirectional mask predictor; drop objective=")
        files = find_weights(source)
        cfg = llada.model_config(meta, name=name)
        pieces, objective = llada.pieces(meta, cfg), "llada"
        ignore = _tied_copy(files, cfg, llada.PREFIX + "ff_out.weight", llada.PREFIX + "wte.weight")
        eos, bos = meta.get("eos_token_id"), _json_object(source / GENERATION_CONFIG).get("bos_token_id")
        architecture = (meta.get("architectures") or [llada.ARCHITECTURE])[0]
    elif fmt == "llama":
        assert meta is not None
        files = find_weights(source)
        objective = objective or "arm"
        mask = _llama_mask(meta, tokenizer, mask_id, source) if objective == "llada" else None
        cfg = llama.model_config(meta, mask_token_id=mask, name=name)
        if mask is not None and mask == cfg.vocab_size:  # a mask token just past the vocabulary: its reserved row
            cfg = dataclasses.replace(cfg, mask_token_id=None)
        pieces = llama.pieces(cfg)
        ignore = llama.ignored(files.names) | _tied_copy(files, cfg, "lm_head.weight", "model.embed_tokens.weight")
        eos, bos = meta.get("eos_token_id"), meta.get("bos_token_id")
        architecture = (meta.get("architectures") or [llama.ARCHITECTURE])[0]
    else:
        files = find_weights(source)
        found = smdm.objective_of(files)
        if objective is not None and objective != found:
            raise ConfigError(f"objective={objective!r}: {source} is an SMDM {found} checkpoint; drop objective=")
        objective = found
        cfg = smdm.model_config(files, n_heads=n_heads, name=name)
        pieces, ignore = smdm.pieces(cfg, objective), set()
        eos, bos = (2, 1) if cfg.vocab_size == 32000 else (None, None)  # LLaMA-2's tokenizer (SMDM's)
        architecture = "SMDM lit_gpt"

    model = load_backbone(
        cfg, pieces, files, causal=objective == "arm", dtype=torch_dtype, device=target, ignore=ignore, what=fmt
    )
    info = PretrainedInfo(
        format=fmt,
        objective=objective,
        mask_id=cfg.mask_id if objective == "llada" else None,
        eos_id=_first_id(eos),
        bos_id=_first_id(bos),
        config=cfg,
        source=source,
        architecture=str(architecture),
        dtype=next(model.parameters()).dtype,
        chat_template=tok_config.get("chat_template") if isinstance(tok_config.get("chat_template"), str) else None,
    )
    return model, tokenizer, info


def _tied_copy(files: WeightFiles, cfg: ModelConfig, head: str, embedding: str) -> set[str]:
    """{head} when the config ties the head to the embedding and the file still holds the head as a copy of it
    (torch.save of a tied model writes both names); ConfigError when that copy differs (the tie is wrong)."""
    if not cfg.tie_embeddings or head not in files.names or embedding not in files.names:
        return set()
    head_weight, embedding_weight = files.get(head), files.get(embedding)
    rows = head_weight.shape[0]
    if head_weight.shape[1:] != embedding_weight.shape[1:] or not torch.equal(head_weight, embedding_weight[:rows]):
        raise ConfigError(
            f"{files.source}: config.json ties the head to the embedding, but {head!r} differs from {embedding!r}; "
            "fix the tie setting in config.json"
        )
    return {head}


def _first_id(value: Any) -> int | None:
    """An id field of config.json: an int, a list of ints (the first), or null."""
    if isinstance(value, list):
        value = value[0] if value else None
    return int(value) if isinstance(value, int) else None


def _llama_mask(meta: dict[str, Any], tokenizer: Tokenizer | None, mask_id: int | None, source: Path) -> int:
    """The mask id of a Llama checkpoint loaded as LLaDA: the caller's, config.json's, or the tokenizer's."""
    vocab = int(meta.get("vocab_size", 0))
    found = mask_id if mask_id is not None else meta.get("mask_token_id")
    if found is None and tokenizer is not None:
        found = next((i for t in MASK_TOKENS if (i := tokenizer.token_to_id(t)) is not None), None)
    if found is None:
        raise ConfigError(
            f"{source}: objective='llada' needs a mask token, and neither config.json (mask_token_id) nor the "
            f"tokenizer ({', '.join(MASK_TOKENS)}) names one; pass mask_id="
        )
    if not 0 <= int(found) <= vocab:
        raise ConfigError(f"mask_id={found} is outside the vocabulary of {vocab} tokens (or the one row after it)")
    return int(found)


def _tokenizer(home: Path) -> Tokenizer | None:
    file = home / TOKENIZER
    if not file.is_file():
        return None
    from llada_lightning.data.tokenizer import load_tokenizer

    return load_tokenizer(file, what=str(file), fix="restore the model's tokenizer.json")


def _tokenizer_config(home: Path) -> dict[str, Any]:
    return _json_object(home / TOKENIZER_CONFIG)


def _json_object(file: Path) -> dict[str, Any]:
    """A small JSON file of the directory as a dict ({} when absent); ConfigError when it cannot be read."""
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{file}: not readable JSON ({exc}); restore the file") from exc
    return data if isinstance(data, dict) else {}
