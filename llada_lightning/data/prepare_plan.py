"""What a preparation asks for (prepare.py): the options, plan.json (the inputs, one unit per shard, the tokenizer
asked for) checked against what a directory already holds, and tokenizer.json (a copy of --tokenizer, or a byte-level
BPE trained on the first --bpe-documents training documents, as cache.py trains on the training split).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.data import shards
from llada_lightning.data.cache import doc_key, file_sha256
from llada_lightning.data.inputs import HFSource, Inputs, Unit, iter_unit
from llada_lightning.data.tokenizer import MIN_BPE_VOCAB, eos_id, load_tokenizer, train_bpe
from llada_lightning.io import atomic_write

DEFAULT_SHARD_BYTES = 256 * 2**20  # of input text per shard: ~64M tokens, a ~128 MB uint16 .bin
DEFAULT_BPE_DOCUMENTS = 100_000
LOCK = ".lock"


@dataclass
class PrepareOptions:
    """What `llada data prepare` was asked (the CLI's options)."""

    sources: list[str]
    out_dir: str
    tokenizer: str = "bpe"  # a tokenizer.json, or "bpe" to train one on the corpus
    vocab_size: int = 4096  # bpe
    val_fraction: float = 0.05  # bpe: its training documents are those this split keeps for training
    bpe_documents: int = DEFAULT_BPE_DOCUMENTS  # bpe: trained on at most this many training documents
    eos_token: str | None = None  # tokenizer file: the document separator (None: the usual ones)
    text_field: str = "text"
    name: str | None = None  # `datasets` source: config name
    split: str = "train"  # `datasets` source: split
    data_files: list[str] | None = None  # `datasets` builder: its files
    shard_bytes: int = DEFAULT_SHARD_BYTES
    workers: int = 1
    verify: bool = False  # also check every done shard's sha256 (reads them all)


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    """The first dotted key (or list index) at which `a` and `b` differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    return f"{where}: {a!r} then, {b!r} now"


def _tokenizer_request(opts: PrepareOptions) -> tuple[dict[str, Any], str]:
    """What plan.json records of the tokenizer (compared on a rerun), and where it comes from."""
    if opts.tokenizer == "bpe":
        if opts.vocab_size < MIN_BPE_VOCAB:
            raise ConfigError(
                f"--vocab-size {opts.vocab_size} is too small for a byte-level BPE; use >= {MIN_BPE_VOCAB}"
            )
        if not 0.0 < opts.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction {opts.val_fraction} is outside (0, 1); e.g. 0.05 (data.val_fraction)")
        if opts.bpe_documents < 1:
            raise ConfigError(f"--bpe-documents {opts.bpe_documents} must be >= 1")
        request = {"kind": "bpe", "vocab_size": opts.vocab_size, "val_fraction": opts.val_fraction,
                   "documents": opts.bpe_documents}  # fmt: skip
        return request, "bpe"
    what, fix = f"--tokenizer {opts.tokenizer}", "give a HF tokenizer.json, or bpe to train one on the corpus"
    tok = load_tokenizer(opts.tokenizer, what=what, fix=fix)
    eos_of(tok, opts.eos_token)
    path = Path(opts.tokenizer).expanduser().resolve()
    return {"kind": "file", "sha256": file_sha256(path), "eos_token": opts.eos_token}, str(path)


def eos_of(tok, eos_token: str | None) -> int:
    try:
        return eos_id(tok, eos_token)
    except ConfigError as exc:  # eos_id names the config key; here it is an option
        raise ConfigError(str(exc).replace("data.eos_token", "--eos-token")) from exc


def make_plan(opts: PrepareOptions, inputs: Inputs) -> dict[str, Any]:
    request, source = _tokenizer_request(opts)
    return {
        "format": shards.FORMAT,
        "format_version": shards.FORMAT_VERSION,
        "inputs": inputs.spec,
        "units": [u.to_dict() for u in inputs.units],
        "tokenizer": request,
        "tokenizer_source": source,  # where it was copied from: recorded, not compared
    }


def _describe(request: dict[str, Any]) -> str:
    if request["kind"] == "bpe":
        return (
            f"--tokenizer bpe --vocab-size {request['vocab_size']} --bpe-documents {request['documents']} "
            f"--val-fraction {request['val_fraction']}"
        )
    eos = f" --eos-token {request['eos_token']!r}" if request["eos_token"] else ""
    return f"--tokenizer a file of sha256 {request['sha256'][:12]}{eos}"


def check_plan(out: Path, plan: dict[str, Any], old: dict[str, Any] | None) -> None:
    """A rerun must ask for what the directory holds; a directory that is not ours is never written into."""
    if old is None:
        if out.exists() and (not out.is_dir() or any(p.name != LOCK for p in out.iterdir())):
            raise ConfigError(
                f"OUT_DIR {out} exists and was not written by `llada data prepare` (no {shards.PLAN}); "
                "give a new or empty directory"
            )
        return
    if old.get("format_version") != shards.FORMAT_VERSION:
        raise ConfigError(
            f"{out} holds format {old.get('format_version')}, not {shards.FORMAT_VERSION}; use a new OUT_DIR"
        )
    if old["tokenizer"] != plan["tokenizer"]:
        raise ConfigError(
            f"{out} was prepared with another tokenizer ({_describe(old['tokenizer'])}, not "
            f"{_describe(plan['tokenizer'])}); rerun with the options it was prepared with ({out / shards.PLAN}), "
            "or use a new OUT_DIR"
        )
    for key in ("inputs", "units"):
        if old[key] != plan[key]:
            raise ConfigError(
                f"{out} was prepared from other inputs ({_first_difference(old[key], plan[key], key)}); "
                f"use a new OUT_DIR, or remove {out} to prepare it again"
            )


def _bpe_documents(plan: dict[str, Any], hf: HFSource | None) -> Iterator[str]:
    """The BPE's training documents: the first `documents` that the split at `val_fraction` keeps for training."""
    request = plan["tokenizer"]
    text_field = plan["inputs"]["text_field"]

    def kept() -> Iterator[str]:
        for u in plan["units"]:
            for doc in iter_unit(Unit(**u), text_field, hf):
                if doc_key(doc) / 2.0**64 >= request["val_fraction"]:  # cache.doc_unit: not held out
                    yield doc

    return islice(kept(), request["documents"])


def ensure_tokenizer(out: Path, plan: dict[str, Any], hf: HFSource | None) -> None:
    path = out / shards.TOKENIZER
    request = plan["tokenizer"]
    if request["kind"] == "file":
        if not path.is_file() or file_sha256(path) != request["sha256"]:
            source = Path(plan["tokenizer_source"])
            atomic_write(path, lambda tmp: shutil.copyfile(source, tmp))
    elif not path.is_file():
        tok = train_bpe(_bpe_documents(plan, hf), request["vocab_size"])
        atomic_write(path, lambda tmp: tok.save(tmp))
