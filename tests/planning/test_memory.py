"""The memory planner's formulas against what torch holds on CPU: the bytes autograd saves for backward
(`saved_tensors_hooks`, unique storages, parameters excluded) and the peak of a forward + backward (torch.profiler's
memory events), on small ladder-shaped models at seq 128-512, in fp32, bf16 autocast and bf16."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys

import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks
from torch.profiler import ProfilerActivity, profile

from llada_lightning.config import ladder
from llada_lightning.config.schema import ObjectiveConfig
from llada_lightning.models import build_model
from llada_lightning.objectives.arm import ARMObjective
from llada_lightning.objectives.llada import LLaDAObjective
from llada_lightning.planning import activation_estimate, memory_estimate

LADDER = ladder()
SMDM_19M = dataclasses.replace(LADDER["smdm-19m"], vocab_size=8000)  # SMDM's shape, a CPU-sized vocabulary
TOLERANCE = 0.25


def _model(cfg, precision: str, objective: str, attention: str = "sdpa", checkpointing: bool = False):
    torch.manual_seed(0)
    model = build_model(cfg, backend=attention, causal=objective == "arm")
    if precision == "bf16-true":
        model = model.to(torch.bfloat16)
    if checkpointing:  # per block, non-reentrant: as training/strategy.py applies train.activation_checkpointing
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        for i, block in enumerate(model.layers):
            model.layers[i] = checkpoint_wrapper(block)
    return model


def _loss(model, cfg, batch: int, seq_len: int, precision: str, objective: str) -> torch.Tensor:
    """One training micro-batch's loss: LLaDA at t = 1 (every token masked: the planner's worst step), or the ARM."""
    x = torch.randint(0, cfg.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(1))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed" else contextlib.nullcontext()
    with autocast:
        if objective == "arm":
            return ARMObjective().training_loss(model, x)["loss"]
        llada = LLaDAObjective(ObjectiveConfig(), cfg.mask_id)
        return llada.loss_at_times(model, x, torch.ones(batch), torch.Generator().manual_seed(2))["loss"]


def saved_bytes(cfg, batch: int, seq_len: int, precision: str, objective: str, attention: str) -> int:
    """Bytes of the unique storages autograd saves for backward in one training forward (parameters excluded)."""
    model = _model(cfg, precision, objective, attention)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        _loss(model, cfg, batch, seq_len, precision, objective)
    return sum(seen.values())


def step_peak(cfg, batch: int, seq_len: int, precision: str, checkpointing: bool) -> int:
    """Peak bytes allocated during one forward + backward above what was live before it (weights, no grads)."""
    model = _model(cfg, precision, "llada", checkpointing=checkpointing)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _loss(model, cfg, batch, seq_len, precision, "llada").backward()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize(("cfg", "batch", "seq_len", "precision", "objective", "attention"), [
    (LADDER["cpu-1m"], 4, 128, "32-true", "llada", "sdpa"),
    (LADDER["cpu-1m"], 2, 128, "32-true", "arm", "math"),  # the math kernel keeps the s^2 probabilities
    (LADDER["cpu-3.5m"], 2, 128, "bf16-mixed", "arm", "sdpa"),
    (SMDM_19M, 1, 512, "bf16-true", "llada", "sdpa"),
])  # fmt: skip
def test_activations_are_the_bytes_autograd_saves(cfg, batch, seq_len, precision, objective, attention) -> None:
    measured = saved_bytes(cfg, batch, seq_len, precision, objective, attention)
    estimate = activation_estimate(cfg, batch, seq_len, precision, objective=objective, attention=attention).saved
    assert estimate == pytest.approx(measured, rel=TOLERANCE), (estimate, measured)


@pytest.mark.parametrize(("cfg", "batch", "seq_len", "precision", "checkpointing"), [
    (LADDER["cpu-3.5m"], 2, 128, "32-true", False),
    (LADDER["cpu-3.5m"], 2, 128, "32-true", True),
    (SMDM_19M, 1, 256, "bf16-mixed", True),  # autocast's weight copies, a recomputed block
])  # fmt: skip
def test_the_peak_of_a_step_with_and_without_checkpointing(cfg, batch, seq_len, precision, checkpointing) -> None:
    measured = step_peak(cfg, batch, seq_len, precision, checkpointing)
    estimate = memory_estimate(cfg, batch, seq_len, precision, strategy="auto", checkpointing=checkpointing)
    # forward and backward only (on CPU AdamW is not the foreach implementation the optimizer-step phase assumes)
    peak = max(v for phase, v in estimate.phases.items() if phase != "optimizer step")
    assert peak == pytest.approx(measured, rel=TOLERANCE), (peak, measured, estimate.phases)
    if checkpointing:
        assert estimate.activations_ckpt < estimate.activations_no_ckpt


def test_bidirectional_and_causal_need_the_same_memory() -> None:
    cfg = LADDER["smdm-1028m"]
    llada = activation_estimate(cfg, 4, 2048, "bf16-mixed", objective="llada", loss_fraction=1.0)
    arm = activation_estimate(cfg, 4, 2048, "bf16-mixed", objective="arm", loss_fraction=1.0)
    assert llada == arm


def test_the_planner_imports_no_torch() -> None:
    code = (
        "import sys\nfrom llada_lightning.planning import memory_estimate\nfrom llada_lightning.planning.cli import "
        "register\nfrom llada_lightning.planning.proposal import propose\nassert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
