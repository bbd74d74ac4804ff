"""The checks of benchmarks/gpu_check.sh on one CUDA GPU (about 5 of at most 8 minutes on an H100 or H200):

    attention  flash-attn against SDPA (and the math kernel) through the package's attention backends
               (models/attention.py `attend`): outputs against a float32 reference, forward + backward ms;
               without flash-attn, SDPA only
    train      a bf16-mixed training step of a ~1B LLaDA (smdm-1028m, 4 x 2048 tokens, AdamW): tokens/s and MFU
               (full-convention FLOPs over the GPU's dense bf16 peak, llada_lightning/hardware.py)
    memory     `llada plan`'s estimate (planning/memory.py, no overhead) against torch.cuda.max_memory_allocated
               of a steady-state step of the same model, with and without activation checkpointing
    compile    torch.compile of the same model: the first step (compiling) and the median step against eager
    sampler    generate's tokens/s (the same model in bf16, random weights): exact, cache="dual", threshold=0.9,
               and both (with random weights few tokens pass the threshold: its speed-up here is the cache's)
    fsdp       FSDP2 on one GPU (world size 1, bf16 mixed precision) through training/strategy.py, when present

Each item runs in its own process with a hard timeout (all of them within --budget seconds). Without a CUDA GPU
(or with --cpu) every CUDA measurement is skipped with one line saying so, and the CPU-runnable parts run on tiny
shapes in seconds (attention and sampler on CPU, the planner's estimate for the 1B model), which is how the test
suite runs it. Prints one table; writes JSON to $OUT/gpu_check.json when $OUT is set, else runs/bench/.

    python benchmarks/gpu_check.py [--cpu] [--only attention,train,...] [--budget 480]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODEL, SEQ, MICRO = "smdm-1028m", 2048, 4  # the ~1B LLaDA of the checks
NO_CUDA = "needs a CUDA GPU (torch.cuda.is_available() is False, or --cpu)"


@dataclass
class Ctx:
    cuda: bool

    @property
    def device(self) -> str:
        return "cuda" if self.cuda else "cpu"


def row(item: str, check: str, status: str = "ok", value: float | None = None, unit: str = "", detail: str = ""):
    return {"item": item, "check": check, "status": status, "value": value, "unit": unit, "detail": detail}


def _sync(ctx: Ctx) -> None:
    if ctx.cuda:
        import torch

        torch.cuda.synchronize()


def timed(ctx: Ctx, fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """Median seconds of `fn` over `repeats` calls after `warmup`, the device synchronised around each."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(ctx)
        start = time.perf_counter()
        fn()
        _sync(ctx)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# -- items ---------------------------------------------------------------------------------------------------
def attention(ctx: Ctx) -> list[dict]:
    import torch

    from llada_lightning.models.attention import attend, flash_available

    b, t, h, d = (MICRO, SEQ, 14, 128) if ctx.cuda else (2, 256, 4, 32)  # smdm-1028m: 14 heads of 128
    dtype = torch.bfloat16 if ctx.cuda else torch.float32
    g = torch.Generator(ctx.device).manual_seed(0)
    q, k, v = (torch.randn(b, t, h, d, device=ctx.device, dtype=dtype, generator=g) for _ in range(3))
    reference = attend(q.float(), k.float(), v.float(), causal=False, mask=None, backend="math")
    backends = ["sdpa", "math"] + (["flash"] if ctx.cuda and flash_available() else [])
    outputs, rows = {}, []
    for backend in backends:
        qq, kk, vv = (x.detach().requires_grad_() for x in (q, k, v))

        def step(backend: str = backend, qq=qq, kk=kk, vv=vv) -> None:
            attend(qq, kk, vv, causal=False, mask=None, backend=backend).sum().backward()

        outputs[backend] = attend(q, k, v, causal=False, mask=None, backend=backend).float()
        err = (outputs[backend] - reference).abs().max().item()
        ms = 1e3 * timed(ctx, step, repeats=10 if ctx.cuda else 3)
        detail = (
            f"{b}x{t}, {h} heads of {d}, {str(dtype).removeprefix('torch.')}, bidirectional; max |out - fp32| {err:.2e}"
        )
        if backend == "flash":
            detail += f", max |flash - sdpa| {(outputs['flash'] - outputs['sdpa']).abs().max().item():.2e}"
        rows.append(row("attention", f"{backend} forward+backward", value=ms, unit="ms", detail=detail))
    if "flash" not in backends:
        why = "flash-attn not installed (pip install flash-attn): SDPA only" if ctx.cuda else f"flash-attn {NO_CUDA}"
        rows.append(row("attention", "flash forward+backward", "skipped", detail=why))
    return rows


def _train_setup(ctx: Ctx, name: str, checkpointing: bool = False, seq: int = SEQ, micro: int = MICRO):
    """Model, objective, optimizer and a step function of `name` (LLaDA, bf16 autocast on CUDA)."""
    import torch

    from llada_lightning.config import load_model_config
    from llada_lightning.config.schema import ObjectiveConfig
    from llada_lightning.models import build_model
    from llada_lightning.objectives.llada import LLaDAObjective

    cfg = load_model_config(name)
    torch.manual_seed(0)
    model = build_model(cfg, device=ctx.device)
    if checkpointing:  # per block, as training/strategy.py applies train.activation_checkpointing
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        for i, block in enumerate(model.layers):
            model.layers[i] = checkpoint_wrapper(block)
    objective = LLaDAObjective(ObjectiveConfig(random_length_prob=0.0), cfg.mask_id)  # one shape every step
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x = torch.randint(0, cfg.vocab_size, (micro, seq), device=ctx.device)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if ctx.cuda else contextlib.nullcontext
    losses: list[float] = []

    def step() -> None:  # as `llada train`: forward, backward, clip, AdamW, gradients set to None
        gen = torch.Generator(ctx.device).manual_seed(len(losses))
        with autocast():
            loss = objective.training_loss(model, x, gen)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())

    return cfg, model, optimizer, step, losses


def train(ctx: Ctx) -> list[dict]:
    from llada_lightning.flops import flops_per_token, mfu, param_counts
    from llada_lightning.hardware import device_peak_flops

    if not ctx.cuda:
        return [row("train", f"bf16 step of {MODEL}", "skipped", detail=NO_CUDA)]
    import torch

    cfg, _, _, step, losses = _train_setup(ctx, MODEL)
    seconds = timed(ctx, step, repeats=8)
    tokens_per_s = MICRO * SEQ / seconds
    name = torch.cuda.get_device_name()
    rows = [
        row(
            "train",
            f"bf16 step of {MODEL}",
            value=tokens_per_s,
            unit="tok/s",
            detail=f"{param_counts(cfg)[1] / 1e9:.2f}B params, {MICRO}x{SEQ}, bf16-mixed, AdamW: {1e3 * seconds:.0f} "
            f"ms/step, loss {losses[-1]:.3f}",
        )
    ]
    peak = device_peak_flops(0)
    per_token = flops_per_token(cfg, SEQ, "full")
    if peak is None:
        rows.append(row("train", "MFU", "skipped", detail=f"no dense bf16 peak known for {name} (hardware.py)"))
    else:
        value = mfu(per_token * MICRO * SEQ, seconds, peak)
        detail = f"{per_token / 1e9:.2f} GFLOP/token (full) over {name}'s {peak / 1e12:.0f} TFLOP/s"
        rows.append(row("train", "MFU", value=value, unit="fraction", detail=detail))
    return rows


def memory(ctx: Ctx) -> list[dict]:
    from llada_lightning.config import load_model_config
    from llada_lightning.planning import memory_estimate

    cfg, rows = load_model_config(MODEL), []
    for ckpt in (False, True):
        est = memory_estimate(cfg, MICRO, SEQ, "bf16-mixed", strategy="auto", gpus=1, checkpointing=ckpt, overhead=0)
        check = f"peak, checkpointing {'on' if ckpt else 'off'}"
        where = f"{MODEL} {MICRO}x{SEQ} bf16-mixed, one GPU: planner {est.total / 1e9:.1f} GB (peak at {est.phase})"
        if not ctx.cuda:
            rows.append(row("memory", check, "skipped", est.total / 1e9, "GB est", f"{where}; measuring {NO_CUDA}"))
            continue
        import torch

        _, model, optimizer, step, _ = _train_setup(ctx, MODEL, checkpointing=ckpt)
        step()
        step()  # optimizer states exist from here on: the next step is a steady-state one
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        measured = torch.cuda.max_memory_allocated()
        rows.append(
            row(
                "memory",
                check,
                value=measured / 1e9,
                unit="GB",
                detail=f"{where}, {est.total / measured:.2f}x measured",
            )
        )
        del model, optimizer, step
        torch.cuda.empty_cache()
    return rows


def compile_check(ctx: Ctx) -> list[dict]:
    if not ctx.cuda:
        return [row("compile", "torch.compile step", "skipped", detail=f"{NO_CUDA}; `llada bench` times it on CPU")]
    _, model, _, step, _ = _train_setup(ctx, MODEL)
    eager = timed(ctx, step, repeats=5)
    model.compile()
    _sync(ctx)
    start = time.perf_counter()
    step()
    _sync(ctx)
    first = time.perf_counter() - start
    compiled = timed(ctx, step, repeats=5, warmup=1)
    detail = f"{MODEL} {MICRO}x{SEQ}: first step (compiling) {first:.0f} s, eager {1e3 * eager:.0f} ms"
    return [
        row("compile", "compiled step", value=1e3 * compiled, unit="ms", detail=f"{detail} ({eager / compiled:.2f}x)")
    ]


def sampler(ctx: Ctx) -> list[dict]:
    import torch

    from llada_lightning.config import ModelConfig, load_model_config
    from llada_lightning.models import build_model
    from llada_lightning.sampling import generate

    if ctx.cuda:
        cfg, batch, prompt_len, gen, repeats = load_model_config(MODEL), 8, 128, 128, 2
    else:  # a tiny model: the code path, in a second
        cfg = ModelConfig(n_layers=2, n_heads=4, n_kv_heads=4, d_model=128, d_ff=384, vocab_size=64, max_seq_len=512)
        batch, prompt_len, gen, repeats = 4, 32, 32, 1
    torch.manual_seed(0)
    model = build_model(cfg, device=ctx.device).eval()
    if ctx.cuda:
        model = model.to(torch.bfloat16)
    prompts = torch.randint(0, cfg.vocab_size, (batch, prompt_len), device=ctx.device)
    modes: dict[str, dict[str, Any]] = {
        "exact": {},
        "dual": {"cache": "dual"},
        "tau 0.9": {"threshold": 0.9},
        "tau 0.9 + dual": {"threshold": 0.9, "cache": "dual"},
    }
    rows, base = [], None
    for name, options in modes.items():
        steps = None if "threshold" in options else gen
        kw = dict(gen_length=gen, steps=steps, block_length=32, mask_id=cfg.mask_id, return_history=True)
        with torch.no_grad():
            out = generate(model, prompts, **kw, **options)
            seconds = timed(ctx, lambda kw=kw, options=options: generate(model, prompts, **kw, **options), repeats, 0)
        base = base or seconds
        model_name = f"{MODEL} bf16 (random weights)" if ctx.cuda else "tiny model, CPU"
        where = f"{model_name}, {batch} x {prompt_len}+{gen}"
        rows.append(
            row(
                "sampler",
                name,
                value=batch * gen / seconds,
                unit="tok/s",
                detail=f"{where}, block 32: {out.forward_passes} forwards, {base / seconds:.2f}x exact",
            )  # fmt: skip
        )
    return rows


def fsdp(ctx: Ctx) -> list[dict]:
    """FSDP2 on one GPU (world size 1, bf16 mixed precision): the place for GPU-only checks of train.strategy=fsdp."""
    if not ctx.cuda:
        return [row("fsdp", "world size 1, bf16 mixed", "skipped", detail=NO_CUDA)]
    try:
        from llada_lightning.training.strategy import shard
    except ImportError as exc:
        return [row("fsdp", "world size 1, bf16 mixed", "skipped", detail=f"no training/strategy.py here ({exc})")]
    import socket

    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from llada_lightning.config.schema import TrainConfig
    from llada_lightning.planning import memory_estimate

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        torch.cuda.set_device(0)
        t = TrainConfig(strategy="fsdp", precision="bf16-mixed", devices=1)
        cfg, model, _, _, _ = _train_setup(ctx, MODEL)
        shard(model, t, init_device_mesh("cuda", (1,), mesh_dim_names=("data_parallel",)))
        step, losses = _sharded_step(ctx, model, cfg)
        step()
        step()
        torch.cuda.reset_peak_memory_stats()
        seconds = timed(ctx, step, repeats=3, warmup=0)
        measured = torch.cuda.max_memory_allocated()
    finally:
        dist.destroy_process_group()
    est = memory_estimate(cfg, MICRO, SEQ, "bf16-mixed", strategy="fsdp", gpus=1, overhead=0)
    return [
        row(
            "fsdp",
            "world size 1, bf16 mixed",
            value=measured / 1e9,
            unit="GB",
            detail=f"{MODEL} {MICRO}x{SEQ}: {1e3 * seconds:.0f} ms/step, loss {losses[-1]:.3f}; planner "
            f"{est.total / 1e9:.1f} GB ({est.total / measured:.2f}x measured)",
        )
    ]


def _sharded_step(ctx: Ctx, model: Any, cfg: Any) -> tuple[Callable[[], None], list[float]]:
    """A step function for a sharded model, and its losses (no autocast: FSDP2's MixedPrecisionPolicy casts)."""
    import torch

    from llada_lightning.config.schema import ObjectiveConfig
    from llada_lightning.objectives.llada import LLaDAObjective

    objective = LLaDAObjective(ObjectiveConfig(random_length_prob=0.0), cfg.mask_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x = torch.randint(0, cfg.vocab_size, (MICRO, SEQ), device=ctx.device)
    losses: list[float] = []

    def step() -> None:
        loss = objective.training_loss(model, x, torch.Generator(ctx.device).manual_seed(len(losses)))["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())

    return step, losses


# The items in order: the check, its hard timeout (seconds), whether it runs torch work in CPU mode (else it only
# says what it skips, in this process). GPU-only checks of other features (FSDP, ...) go here.
ITEMS: dict[str, tuple[Callable[[Ctx], list[dict]], int, bool]] = {
    "attention": (attention, 60, True),
    "train": (train, 150, False),
    "memory": (memory, 150, False),
    "compile": (compile_check, 240, False),
    "sampler": (sampler, 120, True),
    "fsdp": (fsdp, 120, False),
}


# -- orchestration ---------------------------------------------------------------------------------------------
def run_item(name: str, cuda: bool, result: Path) -> None:
    """In the item's own process: run it, write its rows (or its failure) to `result`."""
    if not cuda:
        import torch

        torch.set_num_threads(1)  # tiny shapes: one thread is the steadiest on a shared CPU
    try:
        rows = ITEMS[name][0](Ctx(cuda=cuda))
    except Exception as exc:  # noqa: BLE001 - one failing check is a row that says why
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        rows = [row(name, "", "failed", detail=f"{type(exc).__name__}: {message}")]
    result.write_text(json.dumps(rows))


def spawn(name: str, cuda: bool, timeout: float) -> list[dict]:
    """Run one item in a fresh process (its own session) and kill that session at `timeout` seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "rows.json"
        cmd = [sys.executable, __file__, "--run-item", name, "--result", str(result), *([] if cuda else ["--cpu"])]
        proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the item's process group: the process this function started
            proc.communicate()
            return [row(name, "", "timeout", detail=f"killed after {timeout:.0f} s (its hard time limit)")]
        if result.is_file():
            return json.loads(result.read_text())
        tail = output.decode(errors="replace").strip().splitlines()[-1:] if output else []
        return [row(name, "", "failed", detail=f"exit {proc.returncode}: {' '.join(tail)[:300]}")]


def _value(r: dict) -> str:
    if r["value"] is None:
        return "-"
    if r["unit"] == "fraction":
        return f"{100 * r['value']:.1f}%"
    if r["unit"] == "tok/s":
        return f"{r['value']:,.0f} tok/s"
    return f"{r['value']:.3g} {r['unit']}"


def table(rows: list[dict]) -> str:
    lines = [f"{'item':<10} {'check':<28} {'status':<8} {'value':>14}  detail"]
    lines += [f"{r['item']:<10} {r['check']:<28} {r['status']:<8} {_value(r):>14}  {r['detail']}" for r in rows]
    return "\n".join(lines)


def device_line(cuda: bool) -> str:
    import platform

    import torch

    flash = "flash-attn installed" if _has("flash_attn") else "no flash-attn"
    if cuda:
        props = torch.cuda.get_device_properties(0)
        memory = f"{props.total_memory / 1e9:.0f} GB"
        return f"{props.name}, {memory}, torch {torch.__version__}, CUDA {torch.version.cuda}, {flash}"
    return f"CPU mode ({platform.machine()}, {os.cpu_count()} CPUs), torch {torch.__version__}, {flash}"


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="CPU mode even with a GPU (skips every CUDA measurement)")
    ap.add_argument("--only", default=",".join(ITEMS), help=f"comma-separated items of: {', '.join(ITEMS)}")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for all items together (default 480)")
    ap.add_argument("--run-item", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    if args.run_item:
        run_item(args.run_item, cuda, Path(args.result))
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ITEMS]
    if unknown:
        ap.error(f"unknown item(s) {', '.join(unknown)}; choose from {', '.join(ITEMS)}")
    print(f"gpu_check: {device_line(cuda)}", flush=True)
    deadline, rows = time.monotonic() + args.budget, []
    for name in names:
        left = deadline - time.monotonic()
        if left < 5:
            rows.append(row(name, "", "skipped", detail=f"the --budget of {args.budget:.0f} s is spent"))
            continue
        start = time.monotonic()
        if cuda or ITEMS[name][2]:
            got = spawn(name, cuda, min(ITEMS[name][1], left))
        else:  # CPU mode, nothing to run but the planner's arithmetic: no process of its own
            got = ITEMS[name][0](Ctx(cuda=False))
        print(f"gpu_check: {name} ({time.monotonic() - start:.0f} s)", flush=True)
        rows.extend(got)
    print(table(rows))
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO / "runs" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("gpu_check.json" if os.environ.get("OUT") else f"gpu_check-{time.strftime('%Y%m%d-%H%M%S')}.json")
    record = {"device": device_line(cuda), "cuda": cuda, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": rows}
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
