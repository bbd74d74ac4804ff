"""Tokenise a corpus once into memory-mapped token arrays, shared by every run that uses the same data.

Layout of `<cache_dir>/<key>/`: `train.bin` and `val.bin` (flat token ids, uint16 when the vocabulary
fits, else uint32; every document followed by EOS), `tokenizer.json`, and `meta.json`. `key` hashes all
that determines the content: the source (embedded file hash; hf path/name/split/field and the size and
mtime of local data files), the tokenizer (bpe and its vocab size, or the tokenizer file's hash and the EOS
token), `val_fraction`, `max_documents` and FORMAT_VERSION. It ignores `seq_len`, `num_workers`, the
training seed and the `tokenizers` version (recorded in meta.json): a finished cache is never rebuilt,
so a resumed run always sees the tokens it started with.

The split is by document: a document is held out when a hash of its text falls below `val_fraction`,
independent of any seed and of the document's position, so every run validates on the same text and
identical documents never straddle the split. The BPE is trained on the training documents only.

Concurrent builders (a sweep launching many runs at once) are serialised by an fcntl lock on
`<cache_dir>/<key>.lock`; the cache is built in a temporary directory and renamed into place, so a
directory named `<key>` is always complete.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from itertools import islice
from pathlib import Path

import numpy as np
import tokenizers
from tokenizers import Tokenizer

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import DataConfig
from llada_lightning.data import corpus
from llada_lightning.data.tokenizer import EOS_TOKEN, eos_id, load_tokenizer, tokenizer_vocab_size, train_bpe

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "val")
_ENCODE_BATCH = 512  # documents per encode_batch call


def cache_root(cfg: DataConfig) -> Path:
    """cfg.cache_dir, else $LLADA_CACHE, else ~/.cache/llada_lightning."""
    root = cfg.cache_dir or os.environ.get("LLADA_CACHE") or "~/.cache/llada_lightning"
    return Path(root).expanduser()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_file_spec(entry: str) -> list:
    """A local data file (or glob) by resolved path, size and mtime; anything else (a URL) verbatim."""
    matches = sorted(glob.glob(os.path.expanduser(entry)))
    if not matches:
        return [entry]
    out = []
    for m in matches:
        st = os.stat(m)
        out.append([os.path.abspath(m), st.st_size, st.st_mtime_ns])
    return out


def cache_spec(cfg: DataConfig) -> dict:
    """Everything that determines the cache's content (hashed into the key)."""
    if cfg.source not in corpus.SOURCES:
        raise ConfigError(f"unknown data.source={cfg.source!r}; set data.source to one of {corpus.SOURCES}")
    if cfg.source == "embedded":
        source = {
            "source": "embedded",
            "sha256": file_sha256(corpus.EMBEDDED_PATH),
            "doc_chars": corpus.EMBEDDED_DOC_CHARS,
        }
    else:
        files = cfg.data_files
        if isinstance(files, str):
            files = [files]
        source = {
            "source": cfg.source,
            "path": cfg.path,
            "name": cfg.name,
            "split": cfg.split,
            "text_field": cfg.text_field,
            "data_files": None if files is None else [data_file_spec(str(f)) for f in files],
        }
    if cfg.tokenizer == "bpe":
        tok = {"kind": "bpe", "vocab_size": cfg.vocab_size}
    else:
        load_tokenizer(cfg.tokenizer)  # a missing or broken file: a one-line ConfigError before anything else
        tok = {"kind": "file", "sha256": file_sha256(Path(cfg.tokenizer).expanduser()), "eos": cfg.eos_token}
    return {
        "format_version": FORMAT_VERSION,
        "source": source,
        "tokenizer": tok,
        "val_fraction": cfg.val_fraction,
        "max_documents": cfg.max_documents,
    }


def cache_key(cfg: DataConfig) -> str:
    blob = json.dumps(cache_spec(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def doc_key(text: str) -> int:
    """The document's split key: the first 8 bytes of the SHA-256 of its UTF-8 text, big-endian (a uint64).

    Prepared shards store it per document (shards.py), so training carves the same split without the text.
    """
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def doc_unit(text: str) -> float:
    """A uniform number in [0, 1) from the document's text: doc_key / 2**64."""
    return doc_key(text) / 2.0**64


def assign_splits(docs: Iterator[str] | list[str], val_fraction: float) -> list[bool]:
    """For each document, whether it is held out for validation (True) or trained on (False).

    Held out when the hash of its text is below `val_fraction`; if none is, the lowest hash is held out,
    so validation is never empty. Raises ConfigError when no training document is left.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={val_fraction} is outside (0, 1); set e.g. data.val_fraction=0.05")
    units = [doc_unit(d) for d in docs]
    is_val = [u < val_fraction for u in units]
    if units and not any(is_val):
        is_val[int(np.argmin(units))] = True
    if all(is_val):
        raise ConfigError(
            f"no training document left: {len(units)} document(s) with data.val_fraction={val_fraction}; "
            "use more documents (data.data_files, data.max_documents) or lower data.val_fraction"
        )
    return is_val


def _with_splits(cfg: DataConfig, is_val: list[bool]) -> Iterator[tuple[str, bool]]:
    # strict: the source must yield the same documents on every pass
    yield from zip(corpus.iter_documents(cfg), is_val, strict=True)


def _build(cfg: DataConfig, directory: Path, key: str) -> dict:
    """Tokenise the corpus described by `cfg` into `directory` (renamed to `key` later); returns the meta."""
    t0 = time.perf_counter()
    # Pass 1: the split. Passes re-read the source so the corpus never has to fit in memory.
    is_val = assign_splits(corpus.iter_documents(cfg), cfg.val_fraction)

    # Pass 2: the tokenizer, trained on the training documents only.
    if cfg.tokenizer == "bpe":
        tok = train_bpe((d for d, v in _with_splits(cfg, is_val) if not v), cfg.vocab_size)
        eos = eos_id(tok, EOS_TOKEN)
        if tok.get_vocab_size() < cfg.vocab_size:
            log.warning(
                "the BPE ran out of merges: %d entries instead of data.vocab_size=%d (ids stay below it)",
                tok.get_vocab_size(),
                cfg.vocab_size,
            )
    else:
        tok = load_tokenizer(cfg.tokenizer)
        eos = eos_id(tok, cfg.eos_token)
    vocab_size = tokenizer_vocab_size(cfg) if cfg.tokenizer == "bpe" else tok.get_vocab_size()
    dtype = np.uint16 if vocab_size <= 2**16 else np.uint32
    tok.save(str(directory / "tokenizer.json"))
    t1 = time.perf_counter()

    # Pass 3: encode each split once, appending EOS after every document.
    stats = {s: {"n_tokens": 0, "n_bytes": 0, "n_docs": 0} for s in SPLITS}
    files = {s: open(directory / f"{s}.bin", "wb") for s in SPLITS}  # noqa: SIM115 (closed below)
    try:
        pairs = _with_splits(cfg, is_val)
        while batch := list(islice(pairs, _ENCODE_BATCH)):
            encodings = tok.encode_batch([d for d, _ in batch], add_special_tokens=False)
            ids: dict[str, list[int]] = {s: [] for s in SPLITS}
            for (doc, v), enc in zip(batch, encodings, strict=True):
                split = "val" if v else "train"
                ids[split].extend(enc.ids)
                ids[split].append(eos)
                stats[split]["n_bytes"] += len(doc.encode("utf-8"))
                stats[split]["n_docs"] += 1
            for s in SPLITS:
                if ids[s]:
                    np.asarray(ids[s], dtype=dtype).tofile(files[s])
                    stats[s]["n_tokens"] += len(ids[s])
        for f in files.values():
            f.flush()
            os.fsync(f.fileno())
    finally:
        for f in files.values():
            f.close()

    meta = {
        "format_version": FORMAT_VERSION,
        "key": key,
        "vocab_size": vocab_size,
        "tokenizer_entries": tok.get_vocab_size(),
        "eos_id": eos,
        "dtype": np.dtype(dtype).name,
        "splits": stats,
        "data_config": asdict(cfg),
        "spec": cache_spec(cfg),
        "tokenizers_version": tokenizers.__version__,
        "build_seconds": {"tokenizer": round(t1 - t0, 3), "encode": round(time.perf_counter() - t1, 3)},
    }
    with open(directory / "meta.json", "w") as f:
        json.dump(meta, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    return meta


@contextmanager
def _file_lock(path: Path):
    """An exclusive fcntl lock; where the filesystem has none, build unlocked (the rename keeps it safe)."""
    with open(path, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            locked = True
        except OSError as e:  # e.g. a network filesystem mounted without lock support
            log.warning("cannot lock %s (%s); concurrent builders may duplicate work", path, e)
            locked = False
        yield locked  # closing the file releases the lock


class TokenizedCorpus:
    """A finished cache directory: `.train` / `.val` token memmaps, `.meta`, `.tokenizer_path`, ..."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        with open(self.directory / "meta.json") as f:
            self.meta: dict = json.load(f)
        if self.meta.get("format_version") != FORMAT_VERSION:
            found = self.meta.get("format_version")
            raise ConfigError(
                f"{self.directory}: cache format {found}, expected {FORMAT_VERSION}; "
                "remove that directory to rebuild it"
            )
        dtype = np.dtype(self.meta["dtype"])
        self.train: np.memmap = self._open("train", dtype)
        self.val: np.memmap = self._open("val", dtype)
        self._tokenizer: Tokenizer | None = None

    def _open(self, split: str, dtype: np.dtype) -> np.memmap:
        n = self.meta["splits"][split]["n_tokens"]
        return np.memmap(self.directory / f"{split}.bin", dtype=dtype, mode="r", shape=(n,))

    @property
    def tokenizer_path(self) -> Path:
        return self.directory / "tokenizer.json"

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def eos_id(self) -> int:
        return int(self.meta["eos_id"])

    def split(self, name: str) -> np.memmap:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.train if name == "train" else self.val

    def bytes_per_token(self, split: str) -> float:
        """UTF-8 bytes of the split's text per token, EOS included: bits/byte = nats/token / ln 2 / this."""
        s = self.meta["splits"][split]
        return s["n_bytes"] / s["n_tokens"]

    def __repr__(self) -> str:
        s = self.meta["splits"]
        return (
            f"TokenizedCorpus({str(self.directory)!r}, vocab={self.vocab_size}, "
            f"train={s['train']['n_tokens']} tokens/{s['train']['n_docs']} docs, "
            f"val={s['val']['n_tokens']} tokens/{s['val']['n_docs']} docs)"
        )


def build_once(root: Path, key: str, build: Callable[[Path], dict], what: str = "the corpus") -> Path:
    """`root/key`, built by `build(tmp_dir)` unless it exists (it holds meta.json once complete).

    Many processes may call this at once: an fcntl lock on `root/key.lock` serialises the builders, the build goes
    to a temporary directory renamed into place, so a directory named `key` is always complete.
    """
    final = root / key
    if not (final / "meta.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        with _file_lock(root / f"{key}.lock") as locked:
            if not (final / "meta.json").is_file():  # another process may have finished meanwhile
                if locked:  # nobody else is building: leftovers are from a crashed builder
                    for stale in root.glob(f".{key}.tmp-*"):
                        shutil.rmtree(stale, ignore_errors=True)
                    if final.exists():  # not made by a builder: a complete cache always has meta.json
                        shutil.rmtree(final)
                tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
                tmp.chmod(0o755)  # mkdtemp makes it private; a shared cache must be readable
                log.info("tokenising %s into %s", what, final)
                try:
                    meta = build(tmp)
                    os.rename(tmp, final)
                except OSError:
                    shutil.rmtree(tmp, ignore_errors=True)
                    if not (final / "meta.json").is_file():  # else an unlocked twin finished first
                        raise
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                else:
                    log.info("tokenised %s ready in %s (%s s)", what, final, meta.get("build_seconds"))
    return final


def prepare_corpus(cfg: DataConfig) -> TokenizedCorpus:
    """Build the cache for `cfg` unless it exists, then open it. Safe to call from many processes at once."""
    key = cache_key(cfg)
    return TokenizedCorpus(build_once(cache_root(cfg), key, lambda tmp: _build(cfg, tmp, key)))
