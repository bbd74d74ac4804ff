"""`llada data prepare`: the format, equivalence with the in-process cache, idempotence, kills, bad input, executors."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from prepared_helpers import SHARD, contents, documents, mtimes, prepare_cli, write_jsonl
from tokenizers import Tokenizer

from llada_lightning.config.schema import DataConfig
from llada_lightning.data import prepare, prepare_slurm, shards
from llada_lightning.data.cache import doc_key, file_sha256
from llada_lightning.data.datamodule import LMDataModule
from llada_lightning.data.prepare import PrepareOptions
from llada_lightning.data.tokenizer import train_bpe
from llada_lightning.sweep.cluster import ClusterConfig

SHARD_BYTES = 8 * 2**10


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[Path], list[str]]:
    """~100 documents in two JSON-lines files, prepared once with a BPE of 300 entries in 8 KiB shards."""
    root = tmp_path_factory.mktemp("prepared")
    docs = documents()
    files = [write_jsonl(root / "a.jsonl", docs[:60]), write_jsonl(root / "b.jsonl", docs[60:])]
    opts = PrepareOptions(sources=[str(f) for f in files], out_dir=str(root / "out"), vocab_size=300,
                          shard_bytes=SHARD_BYTES)  # fmt: skip
    prepare.prepare(opts, echo=lambda line: None)
    return root / "out", files, docs


def make_dm(cfg: DataConfig, **kw) -> LMDataModule:
    dm = LMDataModule(cfg, **({"batch_size": 4, "seed": 0, "val_batches": 3} | kw))
    dm.prepare_data()
    dm.setup("fit")
    return dm


def first_batches(dm: LMDataModule, n: int) -> list[torch.Tensor]:
    it = iter(dm.train_dataloader())
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("builder", ["json", "text"])
def test_prepared_data_trains_on_the_in_process_stream(builder, tmp_path, hf_offline, capsys):
    """The same documents through `llada data prepare` + data.source=tokens and through the in-process cache (the
    `datasets` builder of the same files): the same BPE, splits, token streams, bytes per token and batches."""
    docs = documents()
    if builder == "json":
        files = [write_jsonl(tmp_path / "a.jsonl", docs[:60]), write_jsonl(tmp_path / "b.jsonl", docs[60:])]
    else:  # one document per line, with the text builder's universal newlines and a blank line
        lines = [d.replace("\n", " ") for d in docs]
        (tmp_path / "a.txt").write_bytes(("\r\n".join(lines[:60]) + "\n\n").encode())
        (tmp_path / "b.txt").write_text("\n".join(lines[60:]))
        files = [tmp_path / "a.txt", tmp_path / "b.txt"]
    workers = "2" if builder == "json" else "1"
    rc, _, err = prepare_cli(capsys, *files, tmp_path / "out", "--vocab-size", "300", "--shard-size", SHARD,
                             "--workers", workers)  # fmt: skip
    assert rc == 0, err
    ref = make_dm(DataConfig(source="hf", path=builder, data_files=[str(f) for f in files], vocab_size=300,
                             seq_len=32, cache_dir=str(tmp_path / "cache")))  # fmt: skip
    dm = make_dm(DataConfig(source="tokens", paths=[str(tmp_path / "out")], seq_len=32))
    assert len(dm.corpus.sets[0].files) > 2  # several shards, files cut mid-way
    assert file_sha256(ref.tokenizer_path) == file_sha256(dm.tokenizer_path)
    assert (ref.vocab_size, ref.eos_id) == (dm.vocab_size, dm.eos_id) == (300, 0)
    prepared = dm.corpus.sets[0]
    np.testing.assert_array_equal(np.asarray(ref.corpus.train), prepared.train[:])
    np.testing.assert_array_equal(np.asarray(ref.corpus.val), prepared.val[:])
    assert ref.bytes_per_token("val") == dm.bytes_per_token("val")
    assert ref.train_blocks == dm.train_blocks
    for x, y in zip(first_batches(ref, 6), first_batches(dm, 6), strict=True):
        assert torch.equal(x, y)
    for x, y in zip(ref.val_dataloader(), dm.val_dataloader(), strict=True):
        assert torch.equal(x, y)


def test_manifest_counts_every_shard_and_document(corpus):
    out, files, docs = corpus
    manifest = json.loads((out / "manifest.json").read_text())
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert manifest["format"] == "llada-tokens" and manifest["dtype"] == "uint16"
    assert manifest["vocab_size"] == 300 and manifest["eos_id"] == 0
    assert manifest["tokenizer"]["sha256"] == file_sha256(out / "tokenizer.json")
    assert len(manifest["shards"]) > 4
    assert manifest["n_documents"] == len(docs) == sum(s["n_documents"] for s in manifest["shards"])
    assert manifest["n_bytes"] == sum(len(d.encode()) for d in docs)
    assert manifest["n_tokens"] == sum(s["n_tokens"] for s in manifest["shards"])
    assert manifest["n_tokens"] == sum(
        (out / "shards" / f"{s['name']}.bin").stat().st_size // 2 for s in manifest["shards"]
    )
    read, hashes = [], []
    for s in manifest["shards"]:
        tokens = np.fromfile(out / "shards" / f"{s['name']}.bin", dtype="<u2")
        index = np.load(out / "shards" / f"{s['name']}.idx.npy")
        assert index.shape == (3, s["n_documents"]) and index.dtype == np.uint64
        ends = index[0].astype(np.int64)
        assert len(tokens) == s["n_tokens"] == (ends[-1] if len(ends) else 0)
        assert np.all(tokens[ends - 1] == 0)  # every document ends with EOS
        assert np.count_nonzero(tokens == 0) == len(ends)  # and nowhere else
        sha = hashlib.sha256()
        for d, (a, b) in enumerate(zip(np.concatenate([[0], ends[:-1]]), ends, strict=True)):
            text = tok.decode(tokens[a : b - 1].tolist())
            read.append(text)
            assert int(index[1, d]) == doc_key(text) and int(index[2, d]) == len(text.encode())
            sha.update(len(text.encode()).to_bytes(8, "little") + text.encode())
        assert sha.hexdigest() == s["content_sha256"]
        hashes.append(s["content_sha256"])
    assert read == docs  # each document once, in order, decoded losslessly
    assert manifest["content_sha256"] == hashlib.sha256("".join(hashes).encode()).hexdigest()
    assert [s["input"]["path"] for s in manifest["shards"]].count(str(files[0])) > 1  # a file cut into byte ranges


def test_a_second_run_rewrites_nothing(corpus, capsys):
    out, files, _ = corpus
    before = mtimes(out)
    rc, stdout, _ = prepare_cli(capsys, *files, out, "--vocab-size", "300", "--shard-size", "8K", "--workers", "2")
    assert rc == 0 and "0 written now" in stdout
    assert mtimes(out) == before


def test_a_rerun_redoes_only_missing_or_corrupt_shards(corpus, tmp_path, capsys):
    out, files, _ = corpus
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    reference, before = contents(out), mtimes(copy)
    (copy / "shards" / "shard-000001.json").unlink()  # a writer killed before its done marker
    with open(copy / "shards" / "shard-000002.bin", "r+b") as f:  # a truncated file under a marker
        f.truncate(10)
    (copy / "shards" / "shard-000003.idx.npy").unlink()
    (copy / "shards" / ".shard-000003.bin.x1y2.tmp").write_bytes(b"half a shard")  # a killed writer's temporary
    (copy / "manifest.json").unlink()
    rc, stdout, err = prepare_cli(capsys, *files, copy, "--vocab-size", "300", "--shard-size", "8K")
    assert rc == 0, err
    assert "3 written now" in stdout
    assert contents(copy) == reference  # identical bytes, manifest included
    after = mtimes(copy)
    redone = {k for k in after if before.get(k) != after[k]}
    assert redone and all(k.startswith(("shards/shard-000001", "shards/shard-000002", "shards/shard-000003",
                                        "manifest")) for k in redone)  # fmt: skip
    assert not list(copy.rglob("*.tmp"))


_KILL = """
import os, signal, sys
from llada_lightning.data import prepare
opts = prepare.PrepareOptions(sources=sys.argv[2:], out_dir=sys.argv[1], vocab_size=300, shard_bytes=8192)
prepare.plan(opts)  # plan.json and the BPE first, then die in the second shard
real = prepare.iter_unit
def dying(unit, field, hf=None):
    for n, doc in enumerate(real(unit, field, hf)):
        if unit.start > 0 and n == 5:  # the second shard, after two batches were written
            os.kill(os.getpid(), signal.SIGKILL)
        yield doc
prepare.iter_unit = dying
prepare.ENCODE_BATCH = 2
prepare.prepare(opts)
"""


def test_sigkill_mid_shard_then_a_rerun_completes_with_identical_bytes(corpus, tmp_path, capsys):
    out, files, _ = corpus
    copy = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", _KILL, str(copy), *map(str, files)], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert (copy / "shards" / "shard-000000.json").is_file()  # the first shard was done
    assert not (copy / "shards" / "shard-000001.json").exists()  # the second never counts as done
    assert list((copy / "shards").glob(".shard-000001.bin.*.tmp"))  # its half-written tokens, under a temporary name
    assert not (copy / "manifest.json").exists()
    rc, _, err = prepare_cli(capsys, *files, copy, "--vocab-size", "300", "--shard-size", "8K")
    assert rc == 0, err
    assert contents(copy) == contents(out)
    assert not list(copy.rglob("*.tmp"))


def test_every_reader_yields_the_same_documents(corpus, tmp_path, hf_offline):
    """JSON lines in byte ranges, gzip, parquet in row groups and the `datasets` json builder: one token stream."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out, files, docs = corpus
    with gzip.open(tmp_path / "all.jsonl.gz", "wt") as f:
        f.write("".join(Path(p).read_text() for p in files))
    pq.write_table(pa.table({"text": docs}), tmp_path / "all.parquet", row_group_size=7)
    tokenizer = str(out / "tokenizer.json")
    runs = {
        "jsonl": ([str(f) for f in files], {}),
        "gzip": ([str(tmp_path / "all.jsonl.gz")], {}),
        "parquet": ([str(tmp_path / "all.parquet")], {}),
        "hf": (["json"], {"data_files": [str(f) for f in files]}),
    }
    streams, keys, counts = {}, {}, {}
    for name, (sources, extra) in runs.items():
        opts = PrepareOptions(sources=sources, out_dir=str(tmp_path / name), tokenizer=tokenizer,
                              shard_bytes=2 * SHARD_BYTES, **extra)  # fmt: skip
        manifest = prepare.prepare(opts, echo=lambda line: None).manifest
        streams[name] = np.concatenate([np.fromfile(tmp_path / name / "shards" / f"{s['name']}.bin", dtype="<u2")
                                        for s in manifest["shards"]])  # fmt: skip
        keys[name] = np.concatenate([np.load(tmp_path / name / "shards" / f"{s['name']}.idx.npy")[1]
                                     for s in manifest["shards"]])  # fmt: skip
        counts[name] = len(manifest["shards"])
    assert counts["parquet"] > 1 and counts["hf"] > 1 and counts["gzip"] == 1
    for name in runs:
        np.testing.assert_array_equal(streams[name], streams["jsonl"])
        np.testing.assert_array_equal(keys[name], [doc_key(d) for d in docs])  # the same documents, in order


def _bad(tmp_path: Path, corpus) -> dict[str, tuple[list[str], str]]:
    out, files, _ = corpus
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip at all")
    (tmp_path / "a.csv").write_text("text\nhello\n")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    other = train_bpe(["another tokenizer, another corpus"] * 3, 260)
    other.save(str(tmp_path / "other.json"))
    lines = Path(files[0]).read_text().splitlines()
    (tmp_path / "late.jsonl").write_text("\n".join(lines[:40] + ['{"body": "no text here"}'] + lines[40:]) + "\n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    a = str(files[0])
    return {
        "no match": ([str(tmp_path / "nothing" / "*.jsonl"), str(tmp_path / "o")], "no file matches"),
        "no such file": ([str(tmp_path / "missing.jsonl"), str(tmp_path / "o")], "no such file or directory"),
        "unreadable": ([str(tmp_path / "bad.jsonl.gz"), str(tmp_path / "o")], "cannot read"),
        "unsupported": ([str(tmp_path / "a.csv"), str(tmp_path / "o")], "unsupported file type"),
        "text field": ([a, str(tmp_path / "o"), "--text-field", "body"], "no text field 'body'"),
        "late field": (
            [
                str(tmp_path / "late.jsonl"),
                str(tmp_path / "o"),
                "--tokenizer",
                str(out / "tokenizer.json"),
                "--shard-size",
                "8K",
            ],
            "no text field 'text'",
        ),  # fmt: skip
        "not utf-8": ([str(tmp_path / "latin1.txt"), str(tmp_path / "o")], "not UTF-8 at byte 3"),
        "tokenizer": ([*map(str, files), str(out), "--tokenizer", str(tmp_path / "other.json")], "another tokenizer"),
        "inputs": ([*map(str, files), str(out), "--vocab-size", "300", "--shard-size", "16K"], "other inputs"),
        "foreign": ([a, str(tmp_path / "foreign")], "was not written by `llada data prepare`"),
        "eos": (
            [a, str(tmp_path / "o"), "--tokenizer", str(tmp_path / "other.json"), "--eos-token", "<s>"],
            "--eos-token='<s>' is not in the tokenizer",
        ),  # fmt: skip
    }


@pytest.mark.parametrize(
    "case",
    ["no match", "no such file", "unreadable", "unsupported", "text field", "late field", "not utf-8", "tokenizer",
     "inputs", "foreign", "eos"],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_keeps_existing_shards(case, corpus, tmp_path, capsys):
    out, _, _ = corpus
    args, message = _bad(tmp_path, corpus)[case]
    before = mtimes(out)
    rc, _, err = prepare_cli(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("llada: config error: "), err
    assert message in lines[0]
    assert mtimes(out) == before
    if case == "late field":  # the shards before the bad record are done and kept; no manifest
        assert (tmp_path / "o" / "shards" / "shard-000000.json").is_file()
        assert not (tmp_path / "o" / "manifest.json").exists()


def test_the_submitit_path_writes_what_the_local_path_writes(corpus, tmp_path):
    """--slurm through submitit's debug executor (the job array's tasks, each its shards, the last the manifest)."""
    out, files, _ = corpus
    opts = PrepareOptions(sources=[str(f) for f in files], out_dir=str(tmp_path / "out"), vocab_size=300,
                          shard_bytes=SHARD_BYTES)  # fmt: skip
    lines: list[str] = []
    report = prepare_slurm.submit(opts, ClusterConfig(executor="debug"), jobs=3, echo=lines.append)
    assert report.manifest is not None and len(report.written) == report.n_shards
    assert "as 3 array task(s)" in lines[0]
    assert json.loads((tmp_path / "out" / "slurm.json").read_text())["executor"] == "debug"
    assert contents(tmp_path / "out") == contents(out)
    again = prepare_slurm.submit(
        opts, ClusterConfig(executor="debug"), echo=lines.append
    )  # nothing left: nothing submitted
    assert again.written == [] and again.manifest == report.manifest and len(lines) == 1


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_slurm_job_array_prepares_the_same_shards(corpus, tmp_path, capsys):
    out, files, _ = corpus
    rc, stdout, err = prepare_cli(capsys, *files, tmp_path / "out", "--vocab-size", "300", "--shard-size", "8K",
                                  "--slurm", "--cluster", "local-slurm", "--jobs", "2", "--wait")  # fmt: skip
    assert rc == 0, err
    assert "as 2 array task(s)" in stdout and "manifest.json" in stdout
    assert contents(tmp_path / "out") == contents(out)


def test_shards_open_lazily_through_memory_maps(corpus):
    out, _, _ = corpus
    s = shards.PreparedSet(out, 0.05)
    assert s.train._maps == {}  # nothing opened until read
    first = s.train[0:10]
    assert len(s.train._maps) == 1 and isinstance(next(iter(s.train._maps.values())), np.memmap)
    assert first.dtype == np.dtype("<u2")
