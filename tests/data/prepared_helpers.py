"""Helpers of the prepared-data tests: a small corpus written as files, `llada data prepare` in this process."""

from __future__ import annotations

import json
import os
from pathlib import Path

from llada_lightning.data.corpus import split_paragraphs

# The same ~100 documents for every test: the first scenes of the embedded corpus, cut small.
SHARD = "3K"  # small shards: every set has several, and files are cut mid-way


def documents(n: int = 100) -> list[str]:
    from llada_lightning.data.corpus import iter_embedded_works

    docs: list[str] = []
    for _, text in iter_embedded_works():
        docs.extend(split_paragraphs(text, 600))
        if len(docs) >= n:
            return docs[:n]
    return docs


def write_jsonl(path: Path, docs: list[str], field: str = "text") -> Path:
    with open(path, "w") as f:
        for d in docs:
            f.write(json.dumps({field: d, "id": len(d)}) + "\n")
    return path


def mtimes(directory: Path) -> dict[str, int]:
    """Every file below `directory` with its mtime in ns."""
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in sorted(directory.rglob("*")) if p.is_file()}


def contents(directory: Path) -> dict[str, bytes]:
    """The bytes of every shard file and the manifest (not locks, plan timestamps or logs)."""
    names = [p for p in sorted(directory.rglob("*")) if p.is_file() and not p.name.endswith(".lock")]
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in names
        if ".submitit" not in p.parts and p.name != "slurm.json"
    }


def prepare_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`llada data prepare ARGS` in this process: (exit code, stdout, stderr)."""
    from llada_lightning.cli import main

    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    rc = main(["data", "prepare", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err
