"""Document sources: the embedded Shakespeare corpus (offline default) or any `datasets` source.

A document is the unit of the train/val split (see `cache.py`): every run validates on whole documents
that training never sees. The embedded corpus ships 42 works; a work is too coarse a unit (the split
would hold out two plays), so each work is cut into documents of about `EMBEDDED_DOC_CHARS` characters
at paragraph boundaries (blank lines), which gives about 630 documents (ATTRIBUTION.md).
"""

from __future__ import annotations

import itertools
import json
import lzma
import re
from collections.abc import Iterator
from pathlib import Path

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import DataConfig
from llada_lightning.data.tokenizer import first_line

EMBEDDED_PATH = Path(__file__).resolve().parent / "corpus" / "shakespeare.jsonl.xz"

# About 2,000 BPE tokens at vocab 4096: a scene or two of a play, a dozen sonnets.
EMBEDDED_DOC_CHARS = 8000

# tokens: shards written by `llada data prepare` (prepare.py, shards.py), read without documents
SOURCES = ("embedded", "hf", "tokens")

_PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t]*\n)+")  # a newline followed by blank lines; keeps indentation


def iter_embedded_works() -> Iterator[tuple[str, str]]:
    """The shipped works as (title, text), in file order."""
    with lzma.open(EMBEDDED_PATH, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                work = json.loads(line)
                yield work["title"], work["text"]


def split_paragraphs(text: str, target_chars: int = EMBEDDED_DOC_CHARS) -> list[str]:
    """Cut `text` at the first paragraph break after every `target_chars` characters.

    A remainder shorter than half the target is appended to the previous piece, so no document is a
    stray fragment. Leading/trailing blank lines are dropped; nothing else changes.
    """
    spans: list[list[int]] = []  # [start, end) of each piece in `text`
    start = 0
    for m in _PARAGRAPH_BREAK.finditer(text):
        if m.start() - start >= target_chars:
            spans.append([start, m.start()])
            start = m.end()
    if text[start:].strip():
        if spans and len(text) - start < target_chars // 2:
            spans[-1][1] = len(text)  # merge the short tail, break included, into the last piece
        else:
            spans.append([start, len(text)])
    pieces = (text[a:b].strip("\n").rstrip() for a, b in spans)
    return [p for p in pieces if p.strip()]


def _iter_embedded() -> Iterator[str]:
    for _, text in iter_embedded_works():
        yield from split_paragraphs(text)


def load_hf(cfg: DataConfig):
    """`datasets.load_dataset` of cfg's path/name/data_files/split, only its text column; failures are one line."""
    if not cfg.path:
        raise ConfigError(
            "data.source='hf' needs data.path: a hub dataset name (e.g. 'wikitext') or a local builder "
            "('text', 'json') together with data.data_files"
        )
    import datasets  # imported here: the embedded source and cheap config checks do not need it

    try:
        ds = datasets.load_dataset(cfg.path, cfg.name, data_files=cfg.data_files, split=cfg.split)
    except (OSError, ValueError, datasets.exceptions.DatasetGenerationError) as exc:
        raise ConfigError(_load_error(cfg, exc)) from exc
    columns = list(ds.column_names)
    if cfg.text_field not in columns:
        raise ConfigError(
            f"data.text_field={cfg.text_field!r} is not a column of {cfg.path!r} "
            f"(split {cfg.split!r}); available columns: {columns}; set data.text_field to the one holding the text"
        )
    return ds.select_columns([cfg.text_field])


def _load_error(cfg: DataConfig, exc: Exception) -> str:
    """One line for a `datasets.load_dataset` failure: the keys that caused it and the fix."""
    files = f"data.data_files={cfg.data_files}"
    if isinstance(exc, FileNotFoundError) and cfg.data_files:
        return (
            f"{files}: {first_line(exc)}; give existing files (or globs) for data.path={cfg.path!r}, "
            "e.g. data.data_files=[/data/a.txt]"
        )
    if isinstance(exc, FileNotFoundError | ConnectionError):
        return (
            f"data.path={cfg.path!r}: {first_line(exc)}; give a hub dataset name that exists (offline: one "
            "already in the datasets cache), or data.path=text|json with local data.data_files"
        )
    if isinstance(exc, ValueError):
        return (
            f"data.path={cfg.path!r}, data.name={cfg.name!r}, data.split={cfg.split!r}: {first_line(exc)}; "
            "set data.name / data.split to one the dataset has"
        )
    if not isinstance(exc, OSError):  # the builder failed on the files' content
        cause = exc.__cause__ or exc.__context__ or exc
        return (
            f"data.path={cfg.path!r} cannot read {files} ({first_line(cause)}); "
            "fix the files or set data.path to the builder of their format (text, json, csv, parquet)"
        )
    return f"data.path={cfg.path!r}, {files}: {first_line(exc)}; check that the files are readable"


def iter_hf_texts(ds, field: str) -> Iterator[str]:
    """The `field` of every record of `ds`, in order; a record without a string there is a ConfigError."""
    for batch in ds.iter(batch_size=1024):
        for text in batch[field]:
            if not isinstance(text, str):
                raise ConfigError(
                    f"data.text_field={field!r} must hold strings, found {type(text).__name__} (a record without "
                    "the field, or another type); set data.text_field to a text column present in every record"
                )
            yield text


def iter_documents(cfg: DataConfig) -> Iterator[str]:
    """The corpus as a stream of non-empty documents, in a fixed order, at most `cfg.max_documents`.

    Whitespace-only documents (blank lines of a `text` builder) are skipped and not counted.
    Raises ConfigError for an unknown source or a missing text field (at the call), or a corpus with no
    document (when the stream ends).
    """
    if cfg.max_documents is not None and cfg.max_documents < 1:
        raise ConfigError(
            f"data.max_documents={cfg.max_documents} is not a positive count; set data.max_documents>=1, "
            "or null for every document"
        )
    if cfg.source == "embedded":
        docs: Iterator[str] = _iter_embedded()
    elif cfg.source == "hf":
        docs = iter_hf_texts(load_hf(cfg), cfg.text_field)
    elif cfg.source == "tokens":
        raise ConfigError(
            "data.source=tokens reads the shards of `llada data prepare` (data.paths), not documents; "
            "use data.source=hf or embedded here"
        )
    else:
        raise ConfigError(f"unknown data.source={cfg.source!r}; set data.source to one of {SOURCES}")
    return _capped(docs, cfg)


def _capped(docs: Iterator[str], cfg: DataConfig) -> Iterator[str]:
    n = 0
    for doc in itertools.islice((d for d in docs if d.strip()), cfg.max_documents):
        n += 1
        yield doc
    if n == 0:
        raise ConfigError(
            f"the corpus is empty: data.source={cfg.source!r}, data.path={cfg.path!r}, "
            f"data.data_files={cfg.data_files} hold no non-blank document; point them at some text"
        )
