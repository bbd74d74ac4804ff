"""`llada plan [MODEL] --gpus G --gpu-memory 80GB ...`: per-GPU memory and the cheapest setting that fits.

    llada plan smdm-1028m --gpus 8 --gpu-memory 80GB                 # one ladder size (or a model YAML)
    llada plan --gpus 8 --gpu-memory 80GB --prefix smdm-             # every size of a ladder
    llada plan llada-8b --gpus 16 --gpu-memory 80GB --strategy fsdp --json

One row per model: the micro-batch, gradient accumulation (micro-batch x accumulation x gpus = --global-batch) and
checkpointing chosen (planning/proposal.py), then the estimate in GB (planning/memory.py). Imports no torch.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import ModelConfig
from llada_lightning.planning.memory import (
    ATTENTION,
    DEFAULT_OVERHEAD,
    GB,
    PRECISIONS,
    SHARDING,
    STRATEGIES,
)
from llada_lightning.planning.proposal import Proposal, parse_memory, propose

COLUMNS = ("params", "grads", "optimizer", "activations", "logits", "overhead", "total")


def models(name: str | None, prefix: str) -> list[ModelConfig]:
    """The model of `name` (a ladder size or a model YAML), or every ladder size starting with `prefix`."""
    from llada_lightning.config.ladder import LADDER, ladder

    if name is None:
        sizes = list(ladder(prefix).values())
        if not sizes:
            raise ConfigError(f"--prefix {prefix!r} matches no ladder size")
        return sizes
    if name in LADDER:
        return [LADDER[name]]
    if name.endswith((".yaml", ".yml")):
        from llada_lightning.config.compose import compose

        return [compose([f"model={name}"], check=False).model]
    raise ConfigError(f"model {name!r}: not a ladder size (llada ladder) nor a model YAML file")


def _gb(x: float) -> str:
    return f"{x / GB:.1f}"


def row(p: Proposal) -> dict[str, Any]:
    e = p.estimate
    return {
        "model": p.model,
        "N_total": p.n_total,
        "seq_len": p.seq_len,
        "micro_batch": p.micro_batch,
        "accumulation": p.accumulation,
        "checkpointing": p.checkpointing,
        "fits": p.fits,
        **e.as_dict(),
    }


def table(proposals: list[Proposal], gpu_memory: float) -> str:
    head = (
        f"{'model':<12} {'N':>7} {'seq':>5} {'micro x acc':>11} {'ckpt':>4} {'params':>7} {'grads':>6} "
        f"{'optim':>6} {'act off/on':>11} {'logits':>7} {'total':>7}  fits {gpu_memory / GB:.0f} GB"
    )
    lines = [head]
    for p in proposals:
        e = p.estimate
        act = f"{_gb(e.activations_no_ckpt)}/{_gb(e.activations_ckpt)}"
        lines.append(
            f"{p.model:<12} {p.n_total / 1e9:>6.2f}B {p.seq_len:>5} {f'{p.micro_batch} x {p.accumulation}':>11} "
            f"{'yes' if p.checkpointing else 'no':>4} {_gb(e.params):>7} {_gb(e.grads):>6} {_gb(e.optimizer):>6} "
            f"{act:>11} {_gb(e.logits):>7} {_gb(e.total):>7}  {'yes' if p.fits else 'NO'}"
        )
    return "\n".join(lines)


def _cmd_plan(args: argparse.Namespace) -> int:
    gpu_memory = parse_memory(args.gpu_memory)
    overhead = parse_memory(args.overhead) if args.overhead is not None else DEFAULT_OVERHEAD
    checkpointing = {"auto": None, "on": True, "off": False}[args.checkpointing]
    proposals = [
        propose(
            m,
            gpu_memory=gpu_memory,
            gpus=args.gpus,
            global_batch=args.global_batch,
            seq_len=args.seq_len or m.max_seq_len,
            precision=args.precision,
            strategy=args.strategy,
            sharding=args.sharding,
            gpus_per_node=args.gpus_per_node,
            micro_batch=args.micro_batch,
            checkpointing=checkpointing,
            attention=args.attention,
            objective=args.objective,
            overhead=overhead,
        )
        for m in models(args.model, args.prefix)
    ]
    inputs = {k: getattr(args, k) for k in ("gpus", "global_batch", "precision", "strategy", "sharding", "objective")}
    inputs.update(attention=args.attention, gpu_memory=gpu_memory, overhead=overhead, seq_len=args.seq_len)
    if args.json:
        print(json.dumps({"inputs": inputs, "rows": [row(p) for p in proposals]}, indent=2))
        return 0
    strategy = args.strategy + (f" ({args.sharding})" if args.strategy == "fsdp" else "")
    print(
        f"llada plan: {args.gpus} GPU(s) of {gpu_memory / GB:.0f} GB, global batch {args.global_batch}, "
        f"{args.precision}, {strategy}, {args.objective}, attention {args.attention}; GB per GPU"
    )
    print(table(proposals, gpu_memory))
    print(
        f"total = params + optim + {overhead / GB:.1f} GB overhead + the step's peak of grads, activations and logits "
        "(planning/memory.py); act off/on: without / with activation checkpointing"
    )
    return 0


def register(sub: Any) -> None:
    """Add `llada plan` to the main parser's subcommands."""
    p = sub.add_parser(
        "plan",
        help="per-GPU memory of training a model, and the micro-batch / accumulation / checkpointing that fit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", default=None, help="a ladder size (llada ladder) or a model YAML; default: all")
    p.add_argument("--prefix", default="", help="without MODEL: only ladder sizes starting with this (smdm-)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs in all (default 1)")
    p.add_argument("--gpu-memory", default="80GB", help="memory of one GPU: 80GB, 141GB, 80GiB (default 80GB)")
    p.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per node, for --sharding hybrid (default 8)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: the model's context)")
    p.add_argument("--global-batch", type=int, default=256, help="sequences per optimizer step (default 256, SMDM)")
    p.add_argument("--micro-batch", type=int, default=None, help="fix the micro-batch instead of searching it")
    p.add_argument("--precision", default="bf16-mixed", choices=sorted(PRECISIONS))
    p.add_argument("--strategy", default="ddp", choices=STRATEGIES)
    p.add_argument("--sharding", default="full", choices=SHARDING, help="with --strategy fsdp")
    p.add_argument("--checkpointing", default="auto", choices=("auto", "on", "off"), help="activation checkpointing")
    p.add_argument("--objective", default="llada", choices=("llada", "arm"))
    p.add_argument("--attention", default="sdpa", choices=ATTENTION)
    p.add_argument(
        "--overhead", default=None, help=f"fixed CUDA/framework overhead (default {DEFAULT_OVERHEAD / GB:g}GB)"
    )
    p.add_argument("--json", action="store_true", help="print the rows as JSON (bytes)")
    p.set_defaults(func=_cmd_plan)
