"""Prepared token shards: the directory `llada data prepare` writes (prepare.py) and `data.source=tokens` reads.

    OUT_DIR/
      plan.json                    written first: the inputs (files with size and mtime, or a `datasets` source), the
                                   units cut from them (unit i becomes shard i) and the tokenizer asked for
      tokenizer.json               the tokenizer: a byte copy of --tokenizer, or the BPE trained on the corpus
      shards/shard-NNNNNN.bin      flat token ids, little-endian uint16 (vocabulary <= 65536) or uint32; every document
                                   is followed by the EOS id, as in the in-process cache (cache.py)
      shards/shard-NNNNNN.idx.npy  uint64 [3, n_docs] (numpy .npy): row 0 each document's end offset in tokens
                                   (exclusive, its EOS included: document d is bin[end[d-1]:end[d]]); row 1 its split
                                   key (cache.doc_key: the first 8 bytes of the SHA-256 of its UTF-8 text); row 2 its
                                   UTF-8 bytes (for bits per byte)
      shards/shard-NNNNNN.json     the shard's done marker, written after both files: counts, the sha256 of both
                                   files and of the documents, the tokenizer's sha256, the unit
      manifest.json                written last, once every shard is done: totals, per-shard counts and hashes, the
                                   tokenizer (file and sha256), the content hash of the inputs

A shard is done when its marker exists and agrees with its files' sizes, the plan's unit and the tokenizer; files
without a marker (a killed writer) are never read. Training reads manifest.json only.

The train/val split is carved at training time by document, with the in-process cache's rule (cache.assign_splits):
a document is held out when key / 2**64 < data.val_fraction (the lowest key when none is), so the same text is held
out whichever path tokenised it. The training stream is the concatenation of the training documents in shard order
(the validation stream likewise), read through memory maps: nothing is loaded whole.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llada_lightning.config.errors import ConfigError

FORMAT = "llada-tokens"
FORMAT_VERSION = 1
PLAN = "plan.json"
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
SHARDS = "shards"
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}  # little-endian on every platform
INDEX_ROWS = 3  # end offset, split key, UTF-8 bytes
_OPEN_SHARDS = 64  # memory maps kept open at once (each holds a file descriptor)


def token_dtype(vocab_size: int) -> str:
    """The narrowest dtype that holds every id below `vocab_size`."""
    return "uint16" if vocab_size <= 2**16 else "uint32"


def shard_name(i: int) -> str:
    return f"shard-{i:06d}"


def bin_path(directory: Path, i: int) -> Path:
    return directory / SHARDS / f"{shard_name(i)}.bin"


def index_path(directory: Path, i: int) -> Path:
    return directory / SHARDS / f"{shard_name(i)}.idx.npy"


def marker_path(directory: Path, i: int) -> Path:
    return directory / SHARDS / f"{shard_name(i)}.json"


def read_json(path: Path) -> dict | None:
    """A JSON object from `path`, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def marker_matches_files(directory: Path, i: int, marker: dict, itemsize: int) -> bool:
    """Whether shard i's files have the sizes its marker records (a truncated or missing file does not)."""
    try:
        tokens = bin_path(directory, i).stat().st_size
        index = index_path(directory, i).stat().st_size
    except OSError:
        return False
    return tokens == marker["n_tokens"] * itemsize and index == marker["index_bytes"]


class SegmentedTokens:
    """A token sequence made of segments of shard files, sliced like an array (`len`, `x[a:b]`) through memory maps.

    Segment s is `shard[seg_shard[s]][seg_start[s] : seg_start[s] + seg_len[s]]`; at most `_OPEN_SHARDS` maps are open
    at once. Pickles without its maps (spawned DataLoader workers reopen them).
    """

    def __init__(self, files: list[str], dtype: np.dtype, seg_shard: np.ndarray, seg_start: np.ndarray,
                 seg_len: np.ndarray):  # fmt: skip
        self.files = files
        self.dtype = np.dtype(dtype)
        self.seg_shard = seg_shard.astype(np.int64)
        self.seg_start = seg_start.astype(np.int64)
        self.seg_len = seg_len.astype(np.int64)
        self.ends = np.cumsum(self.seg_len)  # segment s covers [ends[s] - seg_len[s], ends[s]) of the sequence
        self._maps: OrderedDict[int, np.memmap] = OrderedDict()

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def _map(self, shard: int) -> np.memmap:
        m = self._maps.get(shard)
        if m is None:
            m = np.memmap(self.files[shard], dtype=self.dtype, mode="r")
            self._maps[shard] = m
            if len(self._maps) > _OPEN_SHARDS:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(shard)
        return m

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice):
            raise TypeError("SegmentedTokens takes slices only")
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise ValueError("SegmentedTokens takes contiguous slices only")
        out = np.empty(max(stop - start, 0), dtype=self.dtype)
        s = int(np.searchsorted(self.ends, start, side="right"))
        pos = start
        while pos < stop:
            begin = int(self.ends[s] - self.seg_len[s])
            a, b = pos - begin, min(stop, int(self.ends[s])) - begin
            first = int(self.seg_start[s])
            out[pos - start : pos - start + b - a] = self._map(int(self.seg_shard[s]))[first + a : first + b]
            pos += b - a
            s += 1
        return out

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = OrderedDict()
        return state


@dataclass
class SplitStats:
    n_tokens: int = 0
    n_docs: int = 0
    n_bytes: int = 0


class PreparedSet:
    """One finished OUT_DIR: its manifest, and its train/val token streams at `val_fraction`."""

    def __init__(self, directory: str | Path, val_fraction: float, *, what: str = "data.paths"):
        self.directory = Path(directory).expanduser()
        self.what = what
        manifest = read_json(self.directory / MANIFEST)
        if manifest is None:
            raise _unprepared(self.directory, what)
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise ConfigError(
                f"{what}: {self.directory}/{MANIFEST} is format {manifest.get('format')!r} version "
                f"{manifest.get('format_version')}, expected {FORMAT!r} {FORMAT_VERSION}; prepare it again"
            )
        self.manifest = manifest
        self.dtype = DTYPES[manifest["dtype"]]
        self.files = [str(self.directory / SHARDS / f"{s['name']}.bin") for s in manifest["shards"]]
        self.stats: dict[str, SplitStats] = {}
        self.train, self.val = self._split(val_fraction)

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    @property
    def eos_id(self) -> int:
        return int(self.manifest["eos_id"])

    @property
    def tokenizer_sha256(self) -> str:
        return str(self.manifest["tokenizer"]["sha256"])

    @property
    def tokenizer_path(self) -> Path:
        return self.directory / TOKENIZER

    def bytes_per_token(self, split: str) -> float:
        s = self.stats[split]
        return s.n_bytes / s.n_tokens

    def _index(self, i: int) -> np.ndarray:
        path = self.directory / SHARDS / f"{self.manifest['shards'][i]['name']}.idx.npy"
        index = np.load(path, mmap_mode="r")
        n = self.manifest["shards"][i]["n_documents"]
        if index.shape != (INDEX_ROWS, n):
            raise ConfigError(
                f"{self.what}: {path} holds {index.shape}, the manifest says ({INDEX_ROWS}, {n}); "
                f"rerun `llada data prepare` on {self.directory} (it redoes corrupt shards)"
            )
        return index

    def _split(self, val_fraction: float) -> tuple[SegmentedTokens, SegmentedTokens]:
        """One pass over the shards' indexes: the runs of consecutive training and validation documents."""
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction} is outside (0, 1); set e.g. data.val_fraction=0.05")
        runs, n_val, lowest = self._runs(val_fraction, forced=None)
        if n_val == 0 and lowest is not None:  # as cache.assign_splits: validation is never empty
            runs, n_val, _ = self._runs(val_fraction, forced=lowest)
        n_docs = int(self.manifest["n_documents"])
        if n_val == n_docs:
            raise ConfigError(
                f"no training document left in {self.directory}: {n_docs} document(s) with data.val_fraction="
                f"{val_fraction}; prepare more documents or lower data.val_fraction"
            )
        streams = []
        for flag in (False, True):
            parts = [r for r in runs if r[0] == flag]
            cols = [np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, np.int64) for k in (1, 2, 3)]
            streams.append(SegmentedTokens(self.files, self.dtype, cols[0], cols[1], cols[2]))
        return streams[0], streams[1]

    def _runs(self, val_fraction: float, forced: tuple[int, int] | None):
        """(is_val, shard ids, token starts, lengths) per shard and split; the validation documents; the lowest key."""
        runs = []
        stats = {"train": SplitStats(), "val": SplitStats()}
        lowest: tuple[int, int] | None = None
        lowest_key = None
        for i in range(len(self.files)):
            if self.manifest["shards"][i]["n_documents"] == 0:
                continue
            index = self._index(i)
            ends = np.asarray(index[0], dtype=np.int64)
            keys = np.asarray(index[1])
            nbytes = np.asarray(index[2], dtype=np.int64)
            is_val = keys.astype(np.float64) / 2.0**64 < val_fraction  # cache.doc_unit(text) < val_fraction
            if forced is not None and forced[0] == i:
                is_val[forced[1]] = True
            d = int(np.argmin(keys))
            if lowest_key is None or keys[d] < lowest_key:
                lowest, lowest_key = (i, d), keys[d]
            begins = np.concatenate([[0], ends[:-1]])
            starts = np.concatenate([[0], np.flatnonzero(is_val[1:] != is_val[:-1]) + 1])
            stops = np.concatenate([starts[1:], [len(is_val)]])
            for flag in (False, True):
                pick = is_val[starts] == flag
                a, b = begins[starts[pick]], ends[stops[pick] - 1]
                if len(a):
                    runs.append((flag, np.full(len(a), i), a, b - a))
                s = stats["val" if flag else "train"]
                mask = is_val == flag
                s.n_docs += int(mask.sum())
                s.n_bytes += int(nbytes[mask].sum())
                s.n_tokens += int((b - a).sum())
        self.stats = stats
        return runs, stats["val"].n_docs, lowest


class PreparedCorpus:
    """The prepared sets of `data.paths`, one tokenizer among them; `.sets[k].train` / `.val` are token streams."""

    def __init__(self, paths: list[str], val_fraction: float):
        if not paths:
            raise ConfigError("data.source=tokens needs data.paths: directories written by `llada data prepare`")
        self.sets = [PreparedSet(p, val_fraction, what=f"data.paths[{k}]") for k, p in enumerate(paths)]
        first = self.sets[0]
        for k, s in enumerate(self.sets[1:], start=1):
            if s.tokenizer_sha256 != first.tokenizer_sha256:
                raise ConfigError(
                    f"data.paths[{k}]={s.directory} was tokenised with another tokenizer than data.paths[0]="
                    f"{first.directory} (sha256 {s.tokenizer_sha256[:12]} != {first.tokenizer_sha256[:12]}); "
                    "prepare every set of a mixture with the same --tokenizer"
                )
        self.directory = first.directory

    @property
    def vocab_size(self) -> int:
        return self.sets[0].vocab_size

    @property
    def eos_id(self) -> int:
        return self.sets[0].eos_id

    @property
    def tokenizer_path(self) -> Path:
        return self.sets[0].tokenizer_path

    def __repr__(self) -> str:
        parts = []
        for s in self.sets:
            t, v = s.stats["train"], s.stats["val"]
            parts.append(
                f"{str(s.directory)!r}: train={t.n_tokens} tokens/{t.n_docs} docs, val={v.n_tokens}/{v.n_docs}"
            )
        return f"PreparedCorpus(vocab={self.vocab_size}, {'; '.join(parts)})"


def _unprepared(directory: Path, what: str) -> ConfigError:
    if (directory / PLAN).is_file():
        hint = "finish it: rerun its `llada data prepare` (`llada data status DIR` tells how far it is)"
    else:
        hint = "prepare it with `llada data prepare SOURCE DIR`"
    return ConfigError(f"{what}: {directory} has no readable {MANIFEST}, not a prepared token set; {hint}")


def prepared_vocab_size(path: str | Path, what: str = "data.paths[0]") -> int:
    """The vocabulary of a prepared set from its manifest (cheap: for config validation)."""
    directory = Path(path).expanduser()
    manifest = read_json(directory / MANIFEST)
    if manifest is None:
        raise _unprepared(directory, what)
    return int(manifest["vocab_size"])
