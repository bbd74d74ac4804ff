"""`llada data prepare`: tokenise a corpus once into the shards of shards.py, on one machine or as a Slurm job array.

Order of work, each step idempotent:
1. resolve the inputs (inputs.py) and the tokenizer: any bad input is one ConfigError before anything is written;
2. plan.json (the inputs, one unit per shard, the tokenizer asked for): a rerun with other inputs or another
   tokenizer is refused, so shards of two corpora or two tokenizers never mix;
3. tokenizer.json: a copy of --tokenizer, or a byte-level BPE trained on the first --bpe-documents training
   documents (those the split at --val-fraction keeps for training, as cache.py trains on the training split);
4. the shards not yet done, by `workers` processes (or by Slurm array tasks, each with its processes). A shard is
   written under its own lock (fcntl): tokens, then index, each by atomic_write (a temporary file renamed), then
   its done marker; a writer killed at any point leaves at most temporary files, removed by the next writer of
   that shard, and never a shard taken as done;
5. manifest.json, last, once every shard is done (by whichever process finishes last; rewritten only if it changed).
A rerun therefore writes only what is missing or corrupt (a marker that disagrees with its files' sizes; with
`verify`, their sha256 too) and rewrites nothing when all is done.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from llada_lightning.config.errors import ConfigError
from llada_lightning.data import shards
from llada_lightning.data.cache import doc_key, file_sha256
from llada_lightning.data.inputs import HFSource, Unit, iter_unit, resolve
from llada_lightning.data.prepare_plan import LOCK, PrepareOptions, check_plan, ensure_tokenizer, eos_of, make_plan
from llada_lightning.data.tokenizer import EOS_TOKEN, load_tokenizer
from llada_lightning.io import atomic_write, atomic_write_json

log = logging.getLogger(__name__)

ENCODE_BATCH = 512  # documents per encode_batch call


@dataclass
class Report:
    out_dir: Path
    n_shards: int
    done_before: int = 0
    written: list[int] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)  # shards another live process is writing
    tokens_written: int = 0
    seconds: float = 0.0
    manifest: dict | None = None


# ---- locks ------------------------------------------------------------------------------------


@contextmanager
def flock(path: Path, *, wait: bool) -> Iterator[bool]:
    """An exclusive fcntl lock on `path`: True once held; False when `wait` is off and another process holds it."""
    with open(path, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            held = True
        except BlockingIOError:
            held = False
        except OSError as exc:  # a filesystem without locks: go on (atomic renames keep files whole)
            log.warning("cannot lock %s (%s); concurrent writers may duplicate work", path, exc)
            held = True
        yield held  # closing the file releases the lock


@dataclass
class _Context:
    """What a shard writer needs, loaded once per process."""

    out: Path
    plan: dict[str, Any]
    hf: HFSource | None
    tokenizer: Any
    tokenizer_sha256: str
    eos_id: int
    vocab_size: int
    dtype: str

    @property
    def itemsize(self) -> int:
        return shards.DTYPES[self.dtype].itemsize

    def unit(self, i: int) -> Unit:
        return Unit(**self.plan["units"][i])


def _hf_of(plan: dict[str, Any]) -> HFSource | None:
    spec = plan["inputs"]
    if spec["kind"] != "hf":
        return None
    return HFSource(spec["path"], spec["name"], spec["split"], spec["data_files"])


def load_context(out: Path, hf: HFSource | None = None) -> _Context:
    plan = shards.read_json(out / shards.PLAN)
    if plan is None:
        raise ConfigError(f"{out}: no readable {shards.PLAN}; run `llada data prepare SOURCE {out}` first")
    path = out / shards.TOKENIZER
    tok = load_tokenizer(path, what=str(path), fix=f"rerun `llada data prepare` on {out}")
    request = plan["tokenizer"]
    if request["kind"] == "bpe":
        eos, vocab = eos_of(tok, EOS_TOKEN), int(request["vocab_size"])  # ids < vocab_size, as cache.py
    else:
        eos, vocab = eos_of(tok, request["eos_token"]), tok.get_vocab_size()
    return _Context(out, plan, hf or _hf_of(plan), tok, file_sha256(path), eos, vocab, shards.token_dtype(vocab))


_CONTEXTS: dict[str, _Context] = {}  # per process


def context(out: Path) -> _Context:
    key = str(out)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = load_context(out)
    return _CONTEXTS[key]


# ---- one shard ---------------------------------------------------------------------------------------------------


def shard_done(ctx: _Context, i: int, *, verify: bool = False) -> dict | None:
    """Shard i's marker when the shard is done (its files whole and of this unit and tokenizer), else None."""
    marker = shards.read_json(shards.marker_path(ctx.out, i))
    if (
        marker is None
        or marker.get("unit") != ctx.plan["units"][i]
        or marker.get("tokenizer_sha256") != ctx.tokenizer_sha256
        or marker.get("dtype") != ctx.dtype
        or not shards.marker_matches_files(ctx.out, i, marker, ctx.itemsize)
    ):
        return None
    if verify and (
        file_sha256(shards.bin_path(ctx.out, i)) != marker["tokens_sha256"]
        or file_sha256(shards.index_path(ctx.out, i)) != marker["index_sha256"]
    ):
        return None
    return marker


def _batches(docs: Iterator[str], n: int) -> Iterator[list[str]]:
    while batch := list(islice(docs, n)):
        yield batch


def write_shard(ctx: _Context, i: int, *, verify: bool = False) -> dict | None:
    """Write shard i unless it is done; None when another process holds its lock (it is writing it)."""
    directory = ctx.out / shards.SHARDS
    directory.mkdir(parents=True, exist_ok=True)
    name = shards.shard_name(i)
    with flock(directory / f"{name}.lock", wait=False) as held:
        if not held:
            return None
        marker = shard_done(ctx, i, verify=verify)
        if marker is not None:
            return marker
        for stale in directory.glob(f".{name}.*.tmp"):  # a killed writer's; we hold the shard's lock
            stale.unlink(missing_ok=True)
        shards.marker_path(ctx.out, i).unlink(missing_ok=True)
        unit = ctx.unit(i)
        dtype = shards.DTYPES[ctx.dtype]
        ends: list[int] = []
        keys: list[int] = []
        sizes: list[int] = []
        tokens_sha, content_sha = hashlib.sha256(), hashlib.sha256()

        def write_tokens(tmp: str) -> None:
            n = 0
            with open(tmp, "wb") as f:
                docs = iter_unit(unit, ctx.plan["inputs"]["text_field"], ctx.hf)
                for batch in _batches(docs, ENCODE_BATCH):
                    ids: list[int] = []
                    for doc, enc in zip(batch, ctx.tokenizer.encode_batch(batch, add_special_tokens=False),
                                        strict=True):  # fmt: skip
                        ids.extend(enc.ids)
                        ids.append(ctx.eos_id)
                        n += len(enc.ids) + 1
                        data = doc.encode("utf-8")
                        ends.append(n)
                        keys.append(doc_key(doc))
                        sizes.append(len(data))
                        content_sha.update(len(data).to_bytes(8, "little"))
                        content_sha.update(data)
                    chunk = np.asarray(ids, dtype=dtype).tobytes()
                    tokens_sha.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())

        def write_index(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.save(f, np.array([ends, keys, sizes], dtype=np.uint64).reshape(shards.INDEX_ROWS, len(ends)))
                f.flush()
                os.fsync(f.fileno())

        atomic_write(shards.bin_path(ctx.out, i), write_tokens)
        index = atomic_write(shards.index_path(ctx.out, i), write_index)
        marker = {
            "shard": name,
            "unit": ctx.plan["units"][i],
            "n_tokens": ends[-1] if ends else 0,
            "n_documents": len(ends),
            "n_bytes": int(sum(sizes)),
            "dtype": ctx.dtype,
            "tokens_sha256": tokens_sha.hexdigest(),
            "index_sha256": file_sha256(index),
            "index_bytes": index.stat().st_size,
            "content_sha256": content_sha.hexdigest(),
            "tokenizer_sha256": ctx.tokenizer_sha256,
        }
        atomic_write_json(shards.marker_path(ctx.out, i), marker)
        return marker


def _work(args: tuple[str, int, bool]) -> tuple[int, dict | None, float]:
    """Pool task: write one shard (the context is loaded once per worker process)."""
    out, i, verify = args
    t0 = time.perf_counter()
    marker = write_shard(context(Path(out)), i, verify=verify)
    return i, marker, time.perf_counter() - t0


def _init_worker() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker process: --workers is the parallelism


def run_shards(out: Path, todo: list[int], workers: int, *, verify: bool = False,
               echo: Callable[[str], None] = print) -> tuple[list[int], list[int], int]:  # fmt: skip
    """Write the shards `todo` with `workers` processes (1: in this process); (written, busy, tokens written)."""
    written, busy, tokens = [], [], 0
    n = len(shards.read_json(out / shards.PLAN)["units"])

    def done(i: int, marker: dict | None, seconds: float) -> None:
        nonlocal tokens
        if marker is None:
            busy.append(i)
            echo(f"{shards.shard_name(i)}: another process is writing it; skipped")
            return
        written.append(i)
        tokens += marker["n_tokens"]
        echo(f"{shards.shard_name(i)} ({len(written)}/{len(todo)}, {n} in all): {marker['n_tokens']:,} tokens, "
             f"{marker['n_documents']:,} documents in {seconds:.1f} s")  # fmt: skip

    if workers <= 1 or len(todo) <= 1:
        _init_worker()
        for i in todo:
            done(*_work((str(out), i, verify)))
        return written, busy, tokens
    # spawn: workers start clean (no forked tokenizer threads or locks); a worker that dies (OOM, kill) breaks the pool
    # with an error rather than hanging it, as multiprocessing.Pool would
    spawn = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=spawn, initializer=_init_worker)
    try:
        for future in as_completed([pool.submit(_work, (str(out), i, verify)) for i in todo]):
            try:
                done(*future.result())
            except BrokenProcessPool as exc:
                raise RuntimeError(
                    "a worker process died (killed, or out of memory) while writing shards; rerun to finish them "
                    "(done shards are kept), with fewer --workers if memory ran out"
                ) from exc
    finally:  # on an error: shards not started are cancelled, those being written finish; done shards stay done
        pool.shutdown(wait=True, cancel_futures=True)
    return written, busy, tokens


# ---- manifest ---------------------------------------------------------------------------------------------------


def finalize(ctx: _Context) -> dict | None:
    """Write manifest.json once every shard is done (unless it already says the same); None while some are not."""
    markers = [shard_done(ctx, i) for i in range(len(ctx.plan["units"]))]
    if any(m is None for m in markers):
        return None
    import tokenizers

    from llada_lightning import __version__

    entries = [
        {
            "name": m["shard"],
            "input": m["unit"],
            **{
                k: m[k]
                for k in ("n_tokens", "n_documents", "n_bytes", "tokens_sha256", "index_sha256", "content_sha256")
            },
        }  # fmt: skip
        for m in markers
    ]
    content = hashlib.sha256("".join(m["content_sha256"] for m in markers).encode()).hexdigest()
    manifest = {
        "format": shards.FORMAT,
        "format_version": shards.FORMAT_VERSION,
        "dtype": ctx.dtype,
        "vocab_size": ctx.vocab_size,
        "eos_id": ctx.eos_id,
        "tokenizer": {
            "file": shards.TOKENIZER,
            "sha256": ctx.tokenizer_sha256,
            **ctx.plan["tokenizer"],
            "source": ctx.plan["tokenizer_source"],
        },  # fmt: skip
        "inputs": ctx.plan["inputs"],
        # sha256 over the shards' content hashes in order; a shard's: sha256 over its documents' UTF-8 bytes, each
        # preceded by its length (8 bytes, little-endian)
        "content_sha256": content,
        "n_tokens": sum(m["n_tokens"] for m in markers),
        "n_documents": sum(m["n_documents"] for m in markers),
        "n_bytes": sum(m["n_bytes"] for m in markers),
        "shards": entries,
        "versions": {"llada_lightning": __version__, "tokenizers": tokenizers.__version__},
    }
    path = ctx.out / shards.MANIFEST
    if shards.read_json(path) != manifest:
        atomic_write_json(path, manifest)
    return manifest


# ---- entry points ---------------------------------------------------------------------------------------------


def plan(opts: PrepareOptions) -> _Context:
    """Steps 1-3: check everything, write plan.json and tokenizer.json (unless they hold the same); the context."""
    if opts.shard_bytes < 1:
        raise ConfigError(f"--shard-size {opts.shard_bytes} must be positive, e.g. 256M")
    if opts.workers < 1:
        raise ConfigError(f"--workers {opts.workers} must be >= 1")
    out = Path(opts.out_dir).expanduser().resolve()
    inputs = resolve(opts.sources, text_field=opts.text_field, shard_bytes=opts.shard_bytes, hf_name=opts.name,
                     hf_split=opts.split, data_files=opts.data_files)  # fmt: skip
    if not inputs.units:
        raise ConfigError(f"SOURCE {opts.sources}: the inputs are empty (no byte, row or row group); give some text")
    new = make_plan(opts, inputs)
    check_plan(out, new, shards.read_json(out / shards.PLAN))
    out.mkdir(parents=True, exist_ok=True)
    with flock(out / LOCK, wait=True):
        old = shards.read_json(out / shards.PLAN)
        check_plan(out, new, old)  # another preparer may have planned meanwhile
        if old is None:
            atomic_write_json(out / shards.PLAN, new)
        ensure_tokenizer(out, new if old is None else old, inputs.hf)
    ctx = load_context(out, inputs.hf)
    _CONTEXTS[str(out)] = ctx
    return ctx


def pending(ctx: _Context, verify: bool = False) -> list[int]:
    return [i for i in range(len(ctx.plan["units"])) if shard_done(ctx, i, verify=verify) is None]


def prepare(opts: PrepareOptions, echo: Callable[[str], None] = print) -> Report:
    """Plan, write every shard not done with `opts.workers` processes, then the manifest."""
    t0 = time.perf_counter()
    ctx = plan(opts)
    todo = pending(ctx, opts.verify)
    report = Report(ctx.out, len(ctx.plan["units"]), done_before=len(ctx.plan["units"]) - len(todo))
    if todo:
        echo(f"{ctx.out}: {len(todo)} of {report.n_shards} shards to write with {min(opts.workers, len(todo))} "
             f"worker(s)")  # fmt: skip
    report.written, report.busy, report.tokens_written = run_shards(ctx.out, todo, opts.workers, verify=opts.verify,
                                                                    echo=echo)  # fmt: skip
    with flock(ctx.out / LOCK, wait=True):
        report.manifest = finalize(ctx)
    report.seconds = time.perf_counter() - t0
    return report
