"""Parameter and FLOP accounting checked against real models: parameter tensors and FlopCounterMode."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from llada_lightning.config import ModelConfig, ladder
from llada_lightning.flops import (
    flops_per_token,
    matmul_params,
    param_counts,
    steps_for_budget,
    tokens_for_budget,
    training_flops,
)
from llada_lightning.models import build_model

LADDER = ladder()
SMALL = ModelConfig(n_layers=2, n_heads=4, n_kv_heads=4, d_model=32, d_ff=80, vocab_size=50)


def counted(cfg: ModelConfig) -> tuple[int, int]:
    """(non-embedding, total) parameters of the real model, built on the meta device."""
    model = build_model(cfg, device="meta")
    total = sum(p.numel() for p in model.parameters())
    non_embedding = sum(p.numel() for name, p in model.named_parameters() if not name.startswith(("embed.", "head.")))
    return non_embedding, total


@pytest.mark.parametrize("name", list(LADDER))
def test_param_counts_match_model_for_every_ladder_size(name: str) -> None:
    assert param_counts(LADDER[name]) == counted(LADDER[name])


@pytest.mark.parametrize(
    "variant",
    [
        {"n_kv_heads": 2},
        {"n_kv_heads": 1},
        {"tie_embeddings": True},
        {"tie_embeddings": True, "mask_token_id": 3},
        {"mask_token_id": 3},
        {"d_ff": 72, "n_kv_heads": 2, "tie_embeddings": True},
    ],
)
def test_param_counts_match_model_for_variants(variant: dict) -> None:
    cfg = dataclasses.replace(SMALL, **variant)
    assert param_counts(cfg) == counted(cfg)


def test_gqa_and_tied_counts_by_hand() -> None:
    d, f, v = 32, 80, 50
    base_nonemb = 2 * (4 * d * d + 3 * d * f + 2 * d) + d
    assert param_counts(SMALL) == (base_nonemb, base_nonemb + (v + 1) * d + v * d)
    gqa = dataclasses.replace(SMALL, n_kv_heads=1)  # k, v shrink from d x d to d x head_dim
    assert param_counts(gqa)[0] == base_nonemb - 2 * 2 * (d * d - d * 8)
    tied = dataclasses.replace(SMALL, tie_embeddings=True)
    assert param_counts(tied) == (base_nonemb, base_nonemb + (v + 1) * d)


@pytest.mark.parametrize("name", [n for n in LADDER if n.startswith("smdm-")])
def test_smdm_closed_form(name: str) -> None:
    cfg = LADDER[name]
    d = cfg.d_model
    assert param_counts(cfg)[0] == cfg.n_layers * (16 * d * d + 2 * d) + d  # SMDM lit_gpt/config.py
    assert matmul_params(cfg) == cfg.n_layers * 16 * d * d


def test_smdm_names_match_their_size() -> None:
    for name, cfg in LADDER.items():
        if name.startswith("smdm-"):
            millions = int(name.removeprefix("smdm-").removesuffix("m"))
            assert round(param_counts(cfg)[0] / 1e6) == millions, name


def test_llada_8b_non_embedding_count() -> None:
    assert param_counts(LADDER["llada-8b"])[0] == 6_979_588_096  # 32 * (4 d^2 + 3 d 12288 + 2 d) + d


def measured_training_flops(
    cfg: ModelConfig, batch: int, seq_len: int, padded: bool = False, causal: bool = False
) -> int:
    torch.manual_seed(0)
    model = build_model(cfg, backend="math", causal=causal)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq_len))
    mask = None
    if padded:
        mask = torch.ones(batch, seq_len, dtype=torch.bool)
        mask[0, : seq_len // 4] = False
    with FlopCounterMode(display=False) as counter:
        model(ids, attention_mask=mask).sum().backward()
    return counter.get_total_flops()


@pytest.mark.parametrize(
    ("name", "seq_len", "causal"),
    [
        ("cpu-0.1m", 64, False),
        ("cpu-0.1m", 256, True),
        ("cpu-1m", 128, False),
        ("cpu-1m", 128, True),
        ("cpu-3.5m", 256, False),
        ("cpu-3.5m", 64, True),
    ],
)
def test_full_convention_matches_flop_counter(name: str, seq_len: int, causal: bool) -> None:
    cfg = LADDER[name]
    measured = measured_training_flops(cfg, batch=2, seq_len=seq_len, causal=causal)
    predicted = flops_per_token(cfg, seq_len, "full", training=True) * 2 * seq_len
    assert abs(measured / predicted - 1) < 0.02


@pytest.mark.parametrize("variant", [{"n_kv_heads": 1}, {"tie_embeddings": True}, {"causal": True}])
def test_full_convention_matches_flop_counter_for_variants(variant: dict) -> None:
    causal = variant.pop("causal", False)
    cfg = dataclasses.replace(SMALL, **variant)
    measured = measured_training_flops(cfg, batch=2, seq_len=48, padded=True, causal=causal)
    predicted = flops_per_token(cfg, 48, "full", training=True) * 2 * 48
    assert abs(measured / predicted - 1) < 0.02


def test_full_convention_by_hand() -> None:
    d, f, v, n_layers, t = 32, 80, 50, 2, 16
    forward = 2 * n_layers * (4 * d * d + 3 * d * f) + 2 * d * v + 4 * n_layers * t * d
    assert flops_per_token(SMALL, t, "full", training=False) == forward
    assert flops_per_token(SMALL, t, "full") == 3 * forward


@pytest.mark.parametrize("name", ["cpu-1m", "smdm-113m", "llada-8b"])
def test_6n_convention(name: str) -> None:
    cfg = LADDER[name]
    n = param_counts(cfg)[0]
    assert flops_per_token(cfg, 2048, "6N") == 6 * n
    assert flops_per_token(cfg, 2048, "6N", training=False) == 2 * n
    assert flops_per_token(cfg, 2048, "6N") == flops_per_token(cfg, 7, "6N")  # no attention term
    for convention in ("6N", "full"):
        training = flops_per_token(cfg, 2048, convention, training=True)
        assert flops_per_token(cfg, 2048, convention, training=False) == training / 3


def test_training_flops_of_mixed_lengths_by_hand() -> None:
    """Sequences of lengths L_s cost sum_s L_s * (per-token FLOPs at context L_s): the attention term is per length."""
    d, f, v, n_layers = 32, 80, 50, 2
    lengths = [16, 1, 7, 16, 3]
    full = sum(3 * (2 * n_layers * (4 * d * d + 3 * d * f) + 2 * d * v + 4 * n_layers * t * d) * t for t in lengths)
    n = n_layers * (4 * d * d + 3 * d * f + 2 * d) + d
    tokens, context = sum(lengths), sum(t * t for t in lengths)
    assert training_flops(SMALL, tokens, context, "full") == full
    assert training_flops(SMALL, tokens, context, "6N") == 6 * n * tokens
    # at one length it is exactly (to the bit) tokens x flops_per_token, the count of full-length runs
    cfg = LADDER["llada-8b"]
    tokens = 123_456 * 4096 * 256
    for convention in ("6N", "full"):
        assert training_flops(cfg, tokens, tokens * 4096, convention) == tokens * flops_per_token(cfg, 4096, convention)


def test_training_flops_of_mixed_lengths_match_flop_counter() -> None:
    lengths = [48, 5, 20]
    measured = sum(measured_training_flops(SMALL, batch=1, seq_len=t) for t in lengths)
    predicted = training_flops(SMALL, sum(lengths), sum(t * t for t in lengths), "full")
    assert abs(measured / predicted - 1) < 0.02


def test_unknown_convention() -> None:
    with pytest.raises(ValueError, match=r"'6N'.*'full'"):
        flops_per_token(SMALL, 16, "6ND")


def test_budget_helpers() -> None:
    cfg = LADDER["cpu-1m"]
    per_token = flops_per_token(cfg, 128, "6N")
    assert tokens_for_budget(1e15, cfg, 128, "6N") == pytest.approx(1e15 / (6 * param_counts(cfg)[0]))
    steps = steps_for_budget(1e15, cfg, 128, tokens_per_step=16 * 128, convention="6N")
    assert isinstance(steps, int)
    assert steps * per_token * 16 * 128 <= 1e15 < (steps + 1) * per_token * 16 * 128
    assert steps_for_budget(1.0, cfg, 128, 16 * 128, "full") == 0
    assert steps_for_budget(1e15, cfg, 128, 2048, "full") < steps  # full counts more per token


def test_flops_module_does_not_import_torch() -> None:
    code = "import sys, llada_lightning.flops; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989e12),  # SXM
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A10G", 125e12),  # not the A100's
    ("NVIDIA L40S", 362e12),
    ("Tesla V100-SXM2-32GB", 125e12),
    ("NVIDIA GeForce RTX 3090", None),  # unknown: MFU needs train.peak_flops
])  # fmt: skip
def test_gpu_peaks_match_device_names_most_specific_first(name: str, peak: float | None) -> None:
    from llada_lightning.hardware import peak_flops_for

    assert peak_flops_for(name) == peak


def test_mfu_is_flops_per_second_over_peak() -> None:
    from llada_lightning.flops import mfu

    assert mfu(4e12, 2.0, 1e13) == pytest.approx(0.2)
