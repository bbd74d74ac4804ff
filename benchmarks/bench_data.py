"""Throughput of `llada data prepare` (tokens/s per worker, 1 and 2 workers) and of the training loader over a prepared
set (tokens/s delivered by the DataLoader), against what an 8-GPU node training a 1B model consumes.

    python benchmarks/bench_data.py            # the embedded corpus x4 (~6M tokens) as JSON lines (~1 min)
    python benchmarks/bench_data.py --quick    # x1

The corpus is the shipped Shakespeare (5 MB) repeated, written as 8 JSON-lines files and prepared in 2 MiB shards
with a byte-level BPE of 4096 entries trained on it beforehand (its training is not timed). Each worker runs one
tokenizer thread (prepare.py sets TOKENIZERS_PARALLELISM=false). The loader reads blocks of 2048 tokens in batches
of 8 (one GPU's micro-batch) in the seeded order of the training sampler, from the page cache (the set was just
written); num_workers 0 and 2 (DataLoader worker processes).

Consumption (the node to feed): training FLOPs per token 6 N (Kaplan et al. 2020; the `6N` convention of flops.py,
attention not counted) with N = 1e9, at MFU 40% of the H100 SXM's dense bf16 peak, 989e12 FLOP/s (NVIDIA H100
datasheet), on 8 GPUs: tokens/s per GPU = 0.4 x 989e12 / 6e9.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

N_PARAMS = 1e9
PEAK_FLOPS = 989e12  # H100 SXM bf16 dense (NVIDIA H100 Tensor Core GPU datasheet)
MFU = 0.4
GPUS = 8
SEQ_LEN = 2048
BATCH = 8


def write_corpus(root: Path, repeat: int) -> list[str]:
    from llada_lightning.config.schema import DataConfig
    from llada_lightning.data.corpus import iter_documents

    docs = list(iter_documents(DataConfig()))
    files = []
    for i in range(8):
        path = root / f"part-{i}.jsonl"
        with open(path, "w") as f:
            for _ in range(repeat):
                for d in docs[i::8]:
                    f.write(json.dumps({"text": d}) + "\n")
        files.append(str(path))
    return files


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker processes, once the pool has ended)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_prepare(files: list[str], tokenizer: str, out: Path, workers: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, tokens) of one `prepare` (worker start-up included)."""
    from llada_lightning.data.prepare import PrepareOptions, prepare

    opts = PrepareOptions(files, str(out), tokenizer=tokenizer, shard_bytes=2 * 2**20, workers=workers)
    start, cpu = time.perf_counter(), _cpu_seconds()
    report = prepare(opts, echo=lambda line: None)
    return time.perf_counter() - start, _cpu_seconds() - cpu, report.manifest["n_tokens"]


def bench_loader(out: Path, num_workers: int, seconds: float) -> float:
    from llada_lightning.config.schema import DataConfig
    from llada_lightning.data.datamodule import LMDataModule

    dm = LMDataModule(DataConfig(source="tokens", paths=[str(out)], seq_len=SEQ_LEN, num_workers=num_workers),
                      batch_size=BATCH, seed=0, val_batches=1)  # fmt: skip
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    for _ in range(20):  # warm up (worker start)
        next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = next(it)
        n += batch.numel()
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from llada_lightning.data.tokenizer import train_bpe

    per_gpu = MFU * PEAK_FLOPS / (6 * N_PARAMS)
    node = GPUS * per_gpu
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        root = Path(tmp)
        files = write_corpus(root, 1 if args.quick else 4)
        size = sum(os.path.getsize(f) for f in files)
        with open(files[0]) as f:
            tok = train_bpe((json.loads(line)["text"] for line in f), 4096)
        tok.save(str(root / "tokenizer.json"))
        rows = []
        for workers in (1, 2):
            seconds, cpu, tokens = bench_prepare(files, str(root / "tokenizer.json"), root / f"out{workers}", workers)
            rows.append((f"prepare, {workers} worker(s)", tokens / seconds, tokens / seconds / workers, tokens / cpu))
        loader = {w: bench_loader(root / "out1", w, 2.0 if args.quick else 5.0) for w in (0, 2)}
    print(f"corpus: {size / 2**20:.1f} MiB of JSON lines, {tokens:,} tokens (BPE 4096); {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f} at the start")  # fmt: skip
    print(f"{'what':<38} {'tokens/s':>12} {'per worker':>12} {'per CPU-s':>12}")
    for name, total, per, per_cpu in rows:
        print(f"{name:<38} {total:>12,.0f} {per:>12,.0f} {per_cpu:>12,.0f}")
    for w, rate in loader.items():
        print(f"{f'loader, seq {SEQ_LEN} x batch {BATCH}, {w} workers':<38} {rate:>12,.0f}")
    print()
    print(
        f"consumption: 1B model, 6N = {6 * N_PARAMS:.0e} FLOPs/token, MFU {MFU:.0%} of {PEAK_FLOPS:.3g} FLOP/s "
        "(H100 bf16 dense)"
    )
    print(f"  per GPU {per_gpu:,.0f} tokens/s; 8-GPU node {node:,.0f} tokens/s; 100x node {100 * node:,.0f} tokens/s")
    best = max(loader.values())
    for label, need in (
        ("100x the node (one loader)", 100 * node),
        ("100x one GPU (its own rank's loader)", 100 * per_gpu),
    ):
        verdict = "yes" if best >= need else "no"
        print(f"  loader >= {label}: {verdict} ({best / need:.2f}x of it)")
    per_cpu = rows[0][3]
    print(f"prepare: 600B tokens at {per_cpu:,.0f} tokens per CPU-second = {600e9 / per_cpu / 3600:,.0f} CPU-hours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
