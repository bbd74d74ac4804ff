"""`llada data prepare SOURCE... OUT_DIR` and `llada data status OUT_DIR` (registered into the main parser by
`register`). No torch imported: preparing data needs none."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from llada_lightning.config.errors import ConfigError

if TYPE_CHECKING:
    from llada_lightning.data.prepare import Report

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """Bytes from `256M`, `1G`, `4096`, `64KiB` (powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if not m:
        raise ConfigError(f"--shard-size {text!r} is not a size; give bytes with an optional K, M, G or T, e.g. 256M")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _summary(report: Report) -> str:
    m = report.manifest
    if m is None:
        return ""
    return (
        f"{report.out_dir}: {len(m['shards'])} shards, {m['n_tokens']:,} tokens, {m['n_documents']:,} documents "
        f"({m['dtype']}, vocabulary {m['vocab_size']}, EOS {m['eos_id']}); {len(report.written)} written now, "
        f"{report.done_before} done before, {report.seconds:.1f} s -> {report.out_dir / 'manifest.json'}"
    )


def _cmd_prepare(args: argparse.Namespace) -> int:
    from llada_lightning.data import prepare

    if len(args.paths) < 2:
        raise ConfigError("give SOURCE... OUT_DIR: at least one source and the output directory")
    given = {"bpe_documents": args.bpe_documents}  # None: PrepareOptions' default
    if args.shard_size is not None:
        given["shard_bytes"] = parse_size(args.shard_size)
    opts = prepare.PrepareOptions(
        sources=args.paths[:-1],
        out_dir=args.paths[-1],
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        val_fraction=args.val_fraction,
        eos_token=args.eos_token,
        text_field=args.text_field,
        name=args.name,
        split=args.split,
        data_files=args.data_files,
        workers=args.workers or 1,
        verify=args.verify,
        **{k: v for k, v in given.items() if v is not None},
    )
    if args.slurm:
        from llada_lightning.sweep.cluster import ClusterConfig, load_cluster

        overrides = [f"cluster.partition={args.partition}"] if args.partition else []
        overrides += [f"cluster.time_min={args.time_min}"] if args.time_min else []
        if args.cluster:
            cluster = load_cluster(args.cluster, overrides)
        else:
            cluster = ClusterConfig(partition=args.partition, time_min=args.time_min or ClusterConfig.time_min)
        opts.workers = args.workers or cluster.cpus_per_task
        from llada_lightning.data.prepare_slurm import submit

        report = submit(opts, cluster, jobs=args.jobs, wait=args.wait)
    else:
        report = prepare.prepare(opts)
    if report.manifest is not None:
        print(_summary(report))
        return 0
    if report.busy:
        print(f"{report.out_dir}: {len(report.busy)} shard(s) are being written by another process; rerun this "
              "command once it ends (done shards are kept)")  # fmt: skip
        return 75  # resumable, as `llada train` says of an unfinished run
    print(f"{report.out_dir}: rerun this command (or `llada data status {report.out_dir}`) once the tasks end; "
          "the last task writes manifest.json")  # fmt: skip
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from llada_lightning.data.prepare_slurm import status

    s = status(args.out_dir)
    jobs = f"; live array tasks: {', '.join(s['live_jobs'])}" if s["live_jobs"] else ""
    print(f"{s['out_dir']}: {s['done']}/{s['shards']} shards done ({s['tokens_done']:,} tokens), manifest "
          f"{'written' if s['manifest'] else 'not written'}{jobs}")  # fmt: skip
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `data` (prepare, status) to the `llada` parser."""
    p = sub.add_parser(
        "data",
        help="tokenise a corpus once into memory-mapped token shards (data.source=tokens): prepare, status",
    )
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser(
        "prepare",
        help="tokenise SOURCE... into sharded token files in OUT_DIR (resumable: rerun to finish)",
        description="Tokenises local files (.jsonl/.json/.txt/.parquet, compressed .gz/.bz2/.zst/.lz4, directories, "
        "globs) or one `datasets` source (a builder with --data-files, or a hub name) into OUT_DIR: flat uint16/uint32 "
        "token shards (EOS after every document) with a document index, tokenizer.json and manifest.json (written "
        "last). Each shard is written atomically and skipped once done: a rerun writes only missing or corrupt "
        "shards. Train on it with data.source=tokens data.paths=[OUT_DIR].",
    )
    q.add_argument("paths", nargs="+", metavar="SOURCE... OUT_DIR", help="the inputs, then the output directory")
    q.add_argument("--tokenizer", default="bpe", help="a HF tokenizer.json, or bpe (default) to train one")
    q.add_argument("--vocab-size", type=int, default=4096, help="bpe: vocabulary size (default 4096)")
    q.add_argument(
        "--val-fraction",
        type=float,
        default=0.05,
        help="bpe: trained on the documents that data.val_fraction=F keeps for training (default 0.05)",
    )
    q.add_argument(
        "--bpe-documents",
        type=int,
        default=None,
        help="bpe: trained on at most this many documents (default 100,000)",
    )
    q.add_argument("--eos-token", default=None, help="tokenizer file: the document separator (default: the usual)")
    q.add_argument("--text-field", default="text", help="the field/column holding the text (default: text)")
    q.add_argument("--data-files", nargs="+", default=None, help="`datasets` builder (SOURCE json, text, ...): files")
    q.add_argument("--name", default=None, help="`datasets` source: config name")
    q.add_argument("--split", default="train", help="`datasets` source: split (default train)")
    q.add_argument(
        "--shard-size",
        default=None,
        help="input per shard, in bytes (K, M, G; default 256M)",
    )
    q.add_argument("--workers", type=int, default=None, help="processes (default 1; --slurm: per array task)")
    q.add_argument("--verify", action="store_true", help="also check the sha256 of every done shard")
    q.add_argument("--slurm", action="store_true", help="write the shards as a submitit job array on Slurm")
    q.add_argument("--cluster", default=None, help="--slurm: a cluster config (configs/cluster/NAME.yaml or a path)")
    q.add_argument("--partition", default=None, help="--slurm: the partition")
    q.add_argument("--time-min", type=int, default=None, help="--slurm: wall-time limit per task, minutes")
    q.add_argument("--jobs", type=int, default=None, help="--slurm: array tasks (default: array_parallelism)")
    q.add_argument("--wait", action="store_true", help="--slurm: wait for the tasks, then write the manifest")
    q.set_defaults(func=_cmd_prepare)
    q = data_sub.add_parser("status", help="shards done of planned in OUT_DIR, and its live Slurm array tasks")
    q.add_argument("out_dir")
    q.set_defaults(func=_cmd_status)
