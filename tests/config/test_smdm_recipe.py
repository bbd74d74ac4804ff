"""`train=smdm` and the SMDM IsoFLOP sweep against SMDM's own scripts (values typed from ML-GSAI/SMDM).

pretrain/train_mdm.py and pretrain/train_ar.py: `learning_rate = 2e-4`, `min_lr = 2e-5`, `weight_decay = 1e-1`,
`beta1 = 0.9`, `beta2 = 0.95`, `grad_clip = 1.0`, torch AdamW's default eps 1e-8, `num_of_devices = 8`,
`global_batch_size = 256` sequences of `block_size` 2048, `warmup_steps = int(max_step / 100)` if above 100 else
100, `max_step = int(flops * 1e12 / (6 * N_millions * global_batch_size * 2048))` with `flops` in units of 1e18,
`micro_batch_size` 32 / 16 / 8 / 4 for N <= 20M / 50M / 1000M / above (MDM), 32 / 16 / 8 / 4 / 2 for N <= 20M /
50M / 1028M / 2000M / above (ARM), validation with `mc_num=128` mask draws; no random sequence lengths.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llada_lightning.config.compose import compose
from llada_lightning.flops import param_counts, tokens_per_step, total_steps
from llada_lightning.sweep import expand, load_spec
from llada_lightning.training.lr_schedule import warmup_steps

SWEEP = Path(__file__).resolve().parents[2] / "experiments" / "smdm-isoflop" / "sweep.yaml"


def smdm_max_step(flops_e18: float, n_millions: float) -> int:
    return int(flops_e18 * 1e12 / (6 * n_millions * 256 * 2048))


def smdm_warmup(max_step: int) -> int:
    return int(max_step / 100) if int(max_step / 100) > 100 else 100


def smdm_micro_batch(n_millions: float, objective: str) -> int:
    if n_millions <= 20:
        return 32
    if n_millions <= 50:
        return 16
    if objective == "llada":
        return 8 if n_millions <= 1000 else 4
    return 8 if n_millions <= 1028 else 4 if n_millions <= 2000 else 2


def test_train_smdm_is_smdms_optimiser_and_schedule() -> None:
    cfg = compose(["train=smdm", "model=smdm-113m", "data.seq_len=2048", "data.vocab_size=32000"])
    t = cfg.train
    assert t.lr == 2e-4 and t.lr * t.min_lr_ratio == pytest.approx(2e-5)
    assert (t.weight_decay, t.beta1, t.beta2, t.adam_eps, t.grad_clip) == (0.1, 0.9, 0.95, 1e-8, 1.0)
    assert t.lr_schedule == "cosine" and t.precision == "bf16-mixed" and t.flops_convention == "6N"
    assert t.devices == 8 and tokens_per_step(cfg) == 256 * 2048
    assert cfg.model.init == "smdm"


@pytest.mark.parametrize(("model", "flops_e18"), [("smdm-113m", 10.0), ("smdm-1028m", 100.0), ("smdm-48m", 6.0)])
def test_train_smdm_steps_and_warmup_follow_smdms_formulas(model: str, flops_e18: float) -> None:
    cfg = compose(
        ["train=smdm", f"model={model}", "data.seq_len=2048", "data.vocab_size=32000"]
        + [f"train.flops_budget={flops_e18 * 1e18}"]
    )
    steps = total_steps(cfg)
    assert steps == smdm_max_step(flops_e18, param_counts(cfg.model)[0] / 1e6)
    # ours rounds 1% of the steps, SMDM floors it (lr_schedule.warmup_steps): at most one step apart
    assert abs(warmup_steps(steps, cfg.train.warmup_fraction, cfg.train.warmup_min_steps) - smdm_warmup(steps)) <= 1


def test_isoflop_sweep_runs_what_smdm_ran() -> None:
    runs = expand(load_spec(str(SWEEP), []))
    assert len(runs) == 70
    for run in runs:
        cfg, t = run.cfg, run.cfg.train
        n_millions = param_counts(cfg.model)[0] / 1e6
        assert cfg.objective.random_length_prob == 0, run.name  # train_mdm.py has no random lengths
        assert cfg.model.init == "smdm" and t.lr == 2e-4 and cfg.data.seq_len == 2048, run.name
        assert t.batch_size * t.accumulate_grad_batches * t.devices == 256, run.name
        # SMDM's micro-batch by size; where its MDM and ARM rules differ, the smaller serves both
        assert t.batch_size == min(smdm_micro_batch(n_millions, o) for o in ("llada", "arm")), run.name
        assert t.val_batches * t.batch_size == 1600, run.name  # the same validation blocks for every run
        assert t.val_every_n_steps == 0 and cfg.objective.val_mask_draws == 128, run.name
        assert run.steps == smdm_max_step(t.flops_budget / 1e18, n_millions), run.name
