"""The tokenised cache: content, keys, reuse, concurrent builders, byte counts."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import queue as queue_module
from dataclasses import replace

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from llada_lightning.config.schema import DataConfig
from llada_lightning.data import cache
from llada_lightning.data.cache import assign_splits, cache_key, prepare_corpus
from llada_lightning.data.corpus import iter_documents
from llada_lightning.data.tokenizer import train_bpe


def small_cfg(tmp_path, **kw) -> DataConfig:
    return DataConfig(max_documents=40, vocab_size=300, seq_len=32, cache_dir=str(tmp_path / "cache"), **kw)


def split_docs(tokens: np.ndarray, eos: int) -> list[list[int]]:
    """Token runs between EOS tokens (every document is followed by one)."""
    assert tokens[-1] == eos
    cuts = np.flatnonzero(tokens == eos)
    starts = np.concatenate([[0], cuts[:-1] + 1])
    return [tokens[a:b].tolist() for a, b in zip(starts, cuts, strict=True)]


def test_embedded_cache_splits_are_disjoint_and_cover_the_corpus(embedded_corpus, embedded_cfg):
    c = embedded_corpus
    assert c.vocab_size == 4096 and c.eos_id == 0 and c.train.dtype == np.uint16
    assert isinstance(c.train, np.memmap) and len(c.train) > 1_000_000 and len(c.val) > 10_000
    tok = c.tokenizer
    decoded = {s: [tok.decode(d) for d in split_docs(np.asarray(c.split(s)), c.eos_id)] for s in ("train", "val")}
    docs = list(iter_documents(embedded_cfg))
    assert set(decoded["train"]).isdisjoint(decoded["val"])
    assert sorted(decoded["train"] + decoded["val"]) == sorted(docs)
    assert c.meta["splits"]["val"]["n_docs"] == len(decoded["val"]) >= 1
    assert 2.5 < c.bytes_per_token("train") < 4.5
    assert abs(c.bytes_per_token("val") - c.bytes_per_token("train")) < 0.5


def test_second_call_is_a_cache_hit(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path)
    first = prepare_corpus(cfg)
    mtime = os.stat(first.directory / "train.bin").st_mtime_ns

    def no_build(*a, **k):
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(cache, "_build", no_build)
    monkeypatch.setattr(cache, "train_bpe", no_build)
    second = prepare_corpus(replace(cfg, seq_len=64, num_workers=2))  # block shape is not part of the key
    assert second.directory == first.directory
    assert os.stat(second.directory / "train.bin").st_mtime_ns == mtime
    np.testing.assert_array_equal(second.train, first.train)
    assert second.meta == first.meta


def test_content_determines_the_key(tmp_path):
    cfg = small_cfg(tmp_path)
    key = cache_key(cfg)
    assert key == cache_key(replace(cfg, seq_len=7, num_workers=3, cache_dir="/elsewhere"))
    others = [
        replace(cfg, vocab_size=301),
        replace(cfg, max_documents=41),
        replace(cfg, val_fraction=0.1),
        replace(cfg, source="hf", path="text", data_files=["x.txt"]),
    ]
    keys = {cache_key(c) for c in others}
    assert key not in keys and len(keys) == len(others)


def test_meta_and_the_bpe_is_trained_on_training_documents_only(tmp_path):
    cfg = small_cfg(tmp_path)
    c = prepare_corpus(cfg)
    docs = list(iter_documents(cfg))
    is_val = assign_splits(docs, cfg.val_fraction)
    expected = train_bpe([d for d, v in zip(docs, is_val, strict=True) if not v], cfg.vocab_size)
    assert c.tokenizer.to_str() == expected.to_str()
    m = c.meta
    assert m["format_version"] == cache.FORMAT_VERSION and m["key"] == c.directory.name == cache_key(cfg)
    assert m["vocab_size"] == 300 and m["eos_id"] == 0 and m["dtype"] == "uint16"
    assert m["data_config"]["max_documents"] == 40
    assert m["splits"]["train"]["n_docs"] + m["splits"]["val"]["n_docs"] == 40
    assert m["splits"]["val"]["n_docs"] == sum(is_val)
    assert m["splits"]["train"]["n_tokens"] == len(c.train)


def test_memmap_equals_direct_tokenisation(tmp_path, hf_offline):
    docs = [f"Document {i}: " + "shall I compare thee to a summer's day? " * (i % 5 + 1) for i in range(30)]
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    tok = train_bpe(docs, 280)
    tok_path = tmp_path / "my_tokenizer.json"
    tok.save(str(tok_path))
    cfg = DataConfig(
        source="hf", path="json", data_files=[str(data)], tokenizer=str(tok_path), val_fraction=0.2,
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    c = prepare_corpus(cfg)
    is_val = assign_splits(docs, 0.2)
    for split, want_val in (("train", False), ("val", True)):
        expected = []
        for d, v in zip(docs, is_val, strict=True):
            if v == want_val:
                expected += tok.encode(d).ids + [c.eos_id]
        arr = c.split(split)
        assert arr.dtype == np.uint16
        np.testing.assert_array_equal(np.asarray(arr), np.asarray(expected, dtype=np.uint16))
    assert c.tokenizer.to_str() == tok.to_str()


def test_large_vocabularies_are_stored_as_uint32(tmp_path, hf_offline):
    words = [f"w{i}" for i in range(70_000)]
    vocab = {"<unk>": 0, **{w: i + 1 for i, w in enumerate(words)}, "</s>": 70_001}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok_path = tmp_path / "big.json"
    tok.save(str(tok_path))
    data = tmp_path / "docs.txt"
    data.write_text("w1 w69999\nw65537 w2\nw3\nw4 w5\n")
    cfg = DataConfig(source="hf", path="text", data_files=[str(data)], tokenizer=str(tok_path),
                     val_fraction=0.3, cache_dir=str(tmp_path / "cache"))  # fmt: skip
    c = prepare_corpus(cfg)
    assert c.vocab_size == 70_002 and c.eos_id == 70_001 and c.train.dtype == np.uint32
    all_ids = set(np.asarray(c.train).tolist()) | set(np.asarray(c.val).tolist())
    assert {70_000, 65_538, 70_001} <= all_ids


def test_n_bytes_of_a_local_hf_corpus(tmp_path, hf_offline):
    lines = ["plain ascii line", "naïve café", "emoji 😀 here", "ünïcödé ∑", "   ", "", "last one"]
    data = tmp_path / "corpus.txt"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = DataConfig(source="hf", path="text", data_files=[str(data)], vocab_size=300, val_fraction=0.3,
                     cache_dir=str(tmp_path / "cache"))  # fmt: skip
    c = prepare_corpus(cfg)
    docs = [s for s in lines if s.strip()]
    is_val = assign_splits(docs, 0.3)
    splits = c.meta["splits"]
    for split, want_val in (("train", False), ("val", True)):
        chosen = [d for d, v in zip(docs, is_val, strict=True) if v == want_val]
        assert splits[split]["n_bytes"] == sum(len(d.encode("utf-8")) for d in chosen)
        assert splits[split]["n_docs"] == len(chosen)
        assert c.bytes_per_token(split) == splits[split]["n_bytes"] / len(c.split(split))
    assert splits["train"]["n_bytes"] + splits["val"]["n_bytes"] == sum(len(d.encode()) for d in docs)


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path)
    real = cache._build

    def broken(cfg, directory, key):
        (directory / "train.bin").write_bytes(b"partial")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cache, "_build", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        prepare_corpus(cfg)
    root = tmp_path / "cache"
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.setattr(cache, "_build", real)
    assert len(prepare_corpus(cfg).train) > 0


def _builder(cfg, barrier, log_path, queue):
    real = cache._build

    def counted(cfg, directory, key):
        with open(log_path, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real(cfg, directory, key)

    cache._build = counted
    barrier.wait()
    c = prepare_corpus(cfg)
    queue.put((str(c.directory), hashlib.sha256(np.asarray(c.train).tobytes()).hexdigest(), c.meta))


def test_concurrent_builders_make_one_cache(tmp_path):
    cfg = small_cfg(tmp_path)
    ctx = mp.get_context("fork")
    n = 3
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    log_path = tmp_path / "builds.log"
    procs = [ctx.Process(target=_builder, args=(cfg, barrier, log_path, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    results = []
    while len(results) < n:
        try:
            results.append(queue.get(timeout=0.5))
        except queue_module.Empty:
            assert all(p.exitcode in (None, 0) for p in procs), "a builder crashed"
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert len(log_path.read_text().split()) == 1  # one builder; the others waited and reused its cache
    assert len({r[0] for r in results}) == 1 and len({r[1] for r in results}) == 1
    assert all(r[2] == results[0][2] for r in results)
    root = tmp_path / "cache"
    assert sorted(p.name for p in root.iterdir()) == sorted([cache_key(cfg), cache_key(cfg) + ".lock"])
    assert prepare_corpus(cfg).meta == results[0][2]
