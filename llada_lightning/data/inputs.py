"""The inputs of `llada data prepare`: SOURCE arguments resolved into units (unit i becomes shard i), and the
documents of each unit, in order.

Local files, directories (searched recursively) and globs, in the order given (the matches of a glob or directory
sorted, as `datasets` sorts data_files patterns):
- JSON lines (.jsonl, .ndjson, .json): one record per line, the document in --text-field;
- text (.txt): one document per line, as the `datasets` text builder reads it (universal newlines: "\\r\\n" and "\\r"
  end lines too; the line break dropped);
- parquet (.parquet): the --text-field column;
- JSON lines or text compressed by pyarrow's codecs (.gz, .bz2, .zst, .lz4).
An uncompressed JSON-lines or text file is cut into byte ranges of about --shard-size (a line belongs to the range
that holds its first byte), a parquet file into runs of whole row groups of about that size (uncompressed); a
compressed file is one unit. Any other SOURCE is a `datasets` source (corpus.load_hf): a builder (json, text,
parquet, csv) with --data-files, or a hub name with --name/--split; its rows are cut into contiguous ranges of about
--shard-size (of its Arrow table). Blank documents are skipped everywhere, as corpus.iter_documents skips them.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import DataConfig
from llada_lightning.data.tokenizer import first_line

KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".txt": "text", ".parquet": "parquet"}
COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4")  # pyarrow.input_stream(compression="detect") reads these
_GLOB_CHARS = set("*?[")
_FIX_TYPES = (
    "give .jsonl/.json/.txt/.parquet files (.gz/.bz2/.zst/.lz4 compressed), or a `datasets` builder with "
    "--data-files (e.g. `llada data prepare csv OUT_DIR --data-files FILE`)"
)


@dataclass(frozen=True)
class Unit:
    """What one shard reads: bytes [start, stop) of a text/jsonl file (stop -1: a compressed file, whole), row groups
    [start, stop) of a parquet file, or rows [start, stop) of a `datasets` source (path "")."""

    kind: str  # jsonl | text | parquet | hf
    path: str
    start: int
    stop: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HFSource:
    """A `datasets` source, as corpus.load_hf reads it."""

    path: str
    name: str | None
    split: str
    data_files: list[str] | None

    def data_config(self, text_field: str) -> DataConfig:
        return DataConfig(source="hf", path=self.path, name=self.name, split=self.split,
                          data_files=self.data_files, text_field=text_field)  # fmt: skip


@dataclass
class Inputs:
    """The resolved inputs: `spec` (what plan.json records and a rerun compares) and the units in order."""

    spec: dict[str, Any]
    units: list[Unit]
    hf: HFSource | None = None


def _kind(path: str) -> tuple[str, bool] | None:
    """(kind, compressed) from a file name, or None for an unsupported one."""
    name = path.lower()
    compressed = name.endswith(COMPRESSIONS)
    if compressed:
        name = name[: name.rfind(".")]
    kind = KINDS.get(os.path.splitext(name)[1])
    if kind is None or (compressed and kind == "parquet"):
        return None
    return kind, compressed


def is_local(source: str) -> bool:
    """Whether SOURCE names local files (a path, a directory, a glob, a known suffix), not a `datasets` source."""
    s = os.path.expanduser(source)
    return (
        os.path.exists(s)
        or bool(_GLOB_CHARS & set(source))
        or _kind(s) is not None
        or source.startswith(("/", "./", "../", "~"))
    )


def _expand(source: str) -> list[str]:
    s = os.path.expanduser(source)
    if _GLOB_CHARS & set(source):
        files = [m for m in sorted(glob.glob(s, recursive=True)) if os.path.isfile(m)]
        if not files:
            raise ConfigError(f"SOURCE {source!r}: no file matches; give existing files, directories or globs")
        return files
    if os.path.isdir(s):
        files = sorted(str(p) for p in Path(s).rglob("*") if p.is_file() and _kind(str(p)) is not None)
        if not files:
            raise ConfigError(f"SOURCE {source!r}: a directory with no data file in it; {_FIX_TYPES}")
        return files
    if os.path.isfile(s):
        return [s]
    raise ConfigError(f"SOURCE {source!r}: no such file or directory; give existing files, directories or globs")


def _open_binary(path: str, compressed: bool):
    if not compressed:
        return open(path, "rb")  # noqa: SIM115 (the caller closes it)
    import pyarrow as pa

    return io.BufferedReader(pa.input_stream(path, compression="detect"))


def _check_file(path: str, kind: str, compressed: bool, text_field: str) -> None:
    """Readable, and (JSON lines, parquet) holding `text_field`: one line naming the file and the fix, else."""
    try:
        if kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            if text_field not in schema.names:
                raise ConfigError(
                    f"--text-field {text_field!r} is not a column of {path} (columns: {schema.names}); "
                    "set --text-field to the column holding the text"
                )
            t = schema.field(text_field).type
            if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
                raise ConfigError(f"column {text_field!r} of {path} holds {t}, not text; set --text-field")
            return
        with _open_binary(path, compressed) as f:
            if kind != "jsonl":
                f.read(1)
                return
            for line in f:
                if line.strip():
                    _json_text(line, text_field, path, 0)
                    return
    except ConfigError:
        raise
    except Exception as exc:  # OSError (permissions), pyarrow's ArrowInvalid (not parquet, bad compression)
        raise ConfigError(f"cannot read {path} ({first_line(exc)}); fix the file or leave it out") from exc


def _byte_units(kind: str, path: str, size: int, shard_bytes: int) -> list[Unit]:
    n = max(1, math.ceil(size / shard_bytes))
    bounds = [size * i // n for i in range(n + 1)]
    return [Unit(kind, path, a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _parquet_units(path: str, shard_bytes: int) -> list[Unit]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    units, start, acc = [], 0, 0
    for g in range(meta.num_row_groups):
        acc += meta.row_group(g).total_byte_size
        if acc >= shard_bytes:
            units.append(Unit("parquet", path, start, g + 1))
            start, acc = g + 1, 0
    if start < meta.num_row_groups:
        units.append(Unit("parquet", path, start, meta.num_row_groups))
    return units


def resolve_local(sources: list[str], text_field: str, shard_bytes: int) -> Inputs:
    files: list[str] = []
    for source in sources:
        files.extend(os.path.abspath(f) for f in _expand(source))
    seen: set[str] = set()
    for f in files:
        if f in seen:
            raise ConfigError(f"{f} is given twice among the SOURCE arguments; give each file once")
        seen.add(f)
    spec_files, units = [], []
    for f in files:
        kind = _kind(f)
        if kind is None:
            raise ConfigError(f"{f}: unsupported file type; {_FIX_TYPES}")
        _check_file(f, *kind, text_field)
        st = os.stat(f)
        spec_files.append([f, st.st_size, st.st_mtime_ns])
        if kind[0] == "parquet":
            units.extend(_parquet_units(f, shard_bytes))
        elif kind[1]:
            units.append(Unit(kind[0], f, 0, -1))
        else:
            units.extend(_byte_units(kind[0], f, st.st_size, shard_bytes))
    spec = {"kind": "files", "files": spec_files, "text_field": text_field, "shard_bytes": shard_bytes}
    return Inputs(spec, units)


_HF_CACHE: dict[tuple, Any] = {}  # per process: one load_dataset per source (workers read many ranges of it)


def load_hf_source(hf: HFSource, text_field: str):
    from llada_lightning.data.corpus import load_hf

    key = (hf.path, hf.name, hf.split, tuple(hf.data_files or ()), text_field)
    if key not in _HF_CACHE:
        try:
            _HF_CACHE[key] = load_hf(hf.data_config(text_field))
        except ConfigError as exc:  # corpus.load_hf names the config keys; here they are the SOURCE and options
            message = str(exc)
            for k, option in _HF_OPTIONS.items():
                message = message.replace(k, option)
            raise ConfigError(message) from exc
    return _HF_CACHE[key]


_HF_OPTIONS = {"data.path": "SOURCE", "data.data_files": "--data-files", "data.name": "--name",
               "data.split": "--split", "data.text_field": "--text-field"}  # fmt: skip


def resolve_hf(hf: HFSource, text_field: str, shard_bytes: int) -> Inputs:
    from llada_lightning.data.cache import data_file_spec

    ds = load_hf_source(hf, text_field)
    rows, nbytes = ds.num_rows, ds.data.nbytes
    n = max(1, min(rows, math.ceil(nbytes / shard_bytes))) if rows else 0
    bounds = [rows * i // n for i in range(n + 1)] if n else [0]
    units = [Unit("hf", "", a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    files = None if hf.data_files is None else [data_file_spec(str(f)) for f in hf.data_files]
    spec = {"kind": "hf", "path": hf.path, "name": hf.name, "split": hf.split, "data_files": hf.data_files,
            "files": files, "fingerprint": ds._fingerprint, "rows": rows, "text_field": text_field,
            "shard_bytes": shard_bytes}  # fmt: skip
    return Inputs(spec, units, hf)


def resolve(sources: list[str], *, text_field: str, shard_bytes: int, hf_name: str | None = None,
            hf_split: str = "train", data_files: list[str] | None = None) -> Inputs:  # fmt: skip
    """SOURCE arguments as local files, or as one `datasets` source (with --data-files, or a name not on disk)."""
    if data_files or not all(is_local(s) for s in sources):
        if len(sources) != 1:
            raise ConfigError(
                f"SOURCE {sources}: a `datasets` source is one name (a builder with --data-files, or a hub name); "
                "give local files, directories or globs, or one source"
            )
        return resolve_hf(HFSource(sources[0], hf_name, hf_split, data_files), text_field, shard_bytes)
    return resolve_local(sources, text_field, shard_bytes)


# ---- reading one unit ---------------------------------------------------------------------------------------


def _lines(path: str, start: int, stop: int, compressed: bool) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of the lines whose first byte lies in [start, stop) (stop -1: to the end)."""
    with _open_binary(path, compressed) as f:
        if start > 0:
            f.seek(start - 1)
            f.readline()  # the rest of the line begun before `start` (or just its line break): not ours
        pos = f.tell() if start > 0 else 0
        while stop < 0 or pos < stop:
            line = f.readline()
            if not line:
                return
            yield pos, line
            pos += len(line)


def _decode(line: bytes, path: str, pos: int) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 at byte {pos + exc.start} ({exc.reason}); convert the file to UTF-8"
        ) from exc


def _json_text(line: bytes, field: str, path: str, pos: int) -> str:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ConfigError(f"{path}: the line at byte {pos} is not JSON ({first_line(exc)}); fix the file") from exc
    if not isinstance(record, dict) or field not in record:
        keys = sorted(record) if isinstance(record, dict) else f"a JSON {type(record).__name__}"
        raise ConfigError(
            f"{path}: the record at byte {pos} has no text field {field!r} (it has {keys}); "
            "set --text-field to the field holding the text in every record"
        )
    text = record[field]
    if not isinstance(text, str):
        raise ConfigError(
            f"{path}: the record at byte {pos} holds {type(text).__name__} in {field!r}, not text; "
            "fix the record, or set --text-field to a field holding text"
        )
    return text


def iter_unit(unit: Unit, text_field: str, hf: HFSource | None = None) -> Iterator[str]:
    """The non-blank documents of `unit`, in order."""
    if unit.kind == "hf":
        from llada_lightning.data.corpus import iter_hf_texts

        assert hf is not None
        ds = load_hf_source(hf, text_field).select(range(unit.start, unit.stop))
        yield from (t for t in iter_hf_texts(ds, text_field) if t.strip())
    elif unit.kind == "parquet":
        import pyarrow.parquet as pq

        groups = list(range(unit.start, unit.stop))
        for batch in pq.ParquetFile(unit.path).iter_batches(batch_size=1024, row_groups=groups, columns=[text_field]):
            for text in batch.column(0).to_pylist():
                if not isinstance(text, str):
                    raise ConfigError(
                        f"{unit.path}: a row of column {text_field!r} is null; drop such rows or set --text-field"
                    )
                if text.strip():
                    yield text
    else:
        compressed = unit.stop < 0
        for pos, line in _lines(unit.path, unit.start, unit.stop, compressed):
            if unit.kind == "jsonl":
                if line.strip():
                    text = _json_text(line, text_field, unit.path, pos)
                    if text.strip():
                        yield text
            else:  # the `datasets` text builder: universal newlines, one document per line
                text = _decode(line, unit.path, pos).rstrip("\n")
                for piece in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
                    if piece.strip():
                        yield piece
