"""training/strategy.py in one process: activation checkpointing, the strategy's config checks and precision choices.
(The two-process FSDP runs are in test_fsdp.py.)"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from llada_lightning.config.compose import compose
from llada_lightning.config.errors import ConfigError
from llada_lightning.config.signature import signature
from llada_lightning.models import build_model
from llada_lightning.objectives import build_objective
from llada_lightning.training.strategy import checkpoint_blocks, mixed_precision, trainer_precision


def _loss_and_grads(model: torch.nn.Module, cfg, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    objective = build_objective(cfg.objective, cfg.model.mask_id)
    gen = torch.Generator().manual_seed(11)
    loss = objective.training_loss(model, batch, gen)["loss"]
    model.zero_grad()
    loss.backward()
    # the wrapper's prefix is in the parameter names seen from the root (not in state_dict keys, checked below)
    return loss.detach(), {
        name.replace("._checkpoint_wrapped_module", ""): p.grad.clone() for name, p in model.named_parameters()
    }


@pytest.mark.parametrize("objective", ["llada", "arm"])
def test_activation_checkpointing_recomputes_each_block_and_leaves_loss_and_gradients_unchanged(objective: str) -> None:
    cfg = compose(["model=cpu-0.1m", f"objective={objective}", "data.seq_len=32", "objective.random_length_prob=0"])
    torch.manual_seed(0)
    plain = build_model(cfg)
    checkpointed = copy.deepcopy(plain)
    assert checkpoint_blocks(checkpointed) == cfg.model.n_layers
    assert checkpoint_blocks(checkpointed) == 0  # idempotent: Lightning calls configure_model once per fit/validate
    calls = [0]
    for layer in checkpointed.layers:  # the wrapped block itself: run in the forward, and again in the backward
        layer._checkpoint_wrapped_module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    batch = torch.randint(0, cfg.model.vocab_size, (4, 32), generator=torch.Generator().manual_seed(1))
    loss, grads = _loss_and_grads(plain, cfg, batch)
    loss_ac, grads_ac = _loss_and_grads(checkpointed, cfg, batch)
    assert calls[0] == 2 * cfg.model.n_layers  # recomputed: the saving is real
    assert torch.equal(loss, loss_ac)
    assert grads.keys() == grads_ac.keys()
    assert all(torch.equal(grads[k], grads_ac[k]) for k in grads), [
        k for k in grads if not torch.equal(grads[k], grads_ac[k])
    ]
    assert checkpointed.state_dict().keys() == plain.state_dict().keys()  # checkpoints keep the plain model's keys


def test_a_run_with_activation_checkpointing_follows_the_golden_curve_and_keeps_its_run_directory(
    tmp_path: Path,
) -> None:
    from test_golden import OVERRIDES, RTOL, load_golden, run_curve  # tests/training/ (pytest's rootdir import)

    golden = load_golden("arm")
    assert signature(compose(["objective=arm", *OVERRIDES, "train.activation_checkpointing=true"])) == signature(
        compose(["objective=arm", *OVERRIDES])
    )
    curve = run_curve("arm", tmp_path / "arm", overrides=["train.activation_checkpointing=true"])
    assert curve["loss"] == pytest.approx(golden["loss"], rel=RTOL)


BAD = {
    "^train.strategy=fsdp shards over processes, but train.devices x train.num_nodes = 1; set train.devices>=2": [
        "train.strategy=fsdp"
    ],
    r"^train.precision=16-mixed is not supported with train.strategy=fsdp \(float16": [
        "train.strategy=fsdp",
        "train.devices=2",
        "train.precision=16-mixed",
    ],
    "^train.fsdp.sharding=hybrid .* needs train.num_nodes>=2 and train.devices>=2 \\(now 1 and 2\\)": [
        "train.strategy=fsdp",
        "train.devices=2",
        "train.fsdp.sharding=hybrid",
    ],
    "^train.fsdp.sharding='zero3' is not one of: full, grad-op, hybrid": ["train.fsdp.sharding=zero3"],
    "^train.fsdp.sharding=grad-op applies only to train.strategy=fsdp \\(now train.strategy=ddp\\)": [
        "train.strategy=ddp",
        "train.fsdp.sharding=grad-op",
    ],
    "^train.compile=true is not supported with train.strategy=fsdp": [
        "train.strategy=fsdp",
        "train.devices=2",
        "train.compile=true",
    ],
}


@pytest.mark.parametrize("message", BAD)
def test_a_bad_strategy_combination_is_one_config_line(message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        compose(BAD[message])
    assert "\n" not in str(info.value)


def test_fsdp_accepts_cpu_processes_and_several_nodes() -> None:
    compose(["train.strategy=fsdp", "train.devices=2", "train.accelerator=cpu", "train.precision=bf16-true"])
    compose(["train.strategy=fsdp", "train.devices=8", "train.num_nodes=4", "train.fsdp.sharding=hybrid"])


def test_the_fsdp_group_enters_the_signature_only_when_set() -> None:
    base = ["model=cpu-0.1m", "train.strategy=fsdp", "train.devices=2"]
    assert signature(compose([*base, "train.fsdp.sharding=full"])) == signature(compose(base))
    assert signature(compose([*base, "train.fsdp.sharding=grad-op"])) != signature(compose(base))


def test_bf16_mixed_under_fsdp_is_fsdp2s_policy_not_autocast() -> None:
    fsdp = compose(["train.strategy=fsdp", "train.devices=2", "train.precision=bf16-mixed"]).train
    policy = mixed_precision(fsdp)
    assert (policy.param_dtype, policy.reduce_dtype, policy.cast_forward_inputs) == (
        torch.bfloat16,
        torch.float32,
        False,  # the float32 RoPE tables are block inputs: not rounded to bfloat16
    )
    assert trainer_precision(fsdp) == "32-true"  # Lightning adds no autocast around it
    ddp = compose(["train.strategy=ddp", "train.devices=2", "train.precision=bf16-mixed"]).train
    assert trainer_precision(ddp) == "bf16-mixed"  # elsewhere Lightning's autocast, as before
    true = compose(["train.strategy=fsdp", "train.devices=2", "train.precision=bf16-true"]).train
    assert mixed_precision(true).param_dtype is None and trainer_precision(true) == "bf16-true"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="peak GPU memory: a CUDA device")
def test_activation_checkpointing_lowers_peak_gpu_memory_at_equal_gradients() -> None:
    """On a GPU, in bf16 autocast at a context where activations dominate: the saving is real, the gradients equal."""
    # a small vocabulary: the logits (the same with or without checkpointing) do not hide the blocks' activations
    cfg = compose(["model=smdm-113m", "model.vocab_size=4096", "objective=arm", "data.seq_len=2048"])
    torch.manual_seed(0)
    plain = build_model(cfg, device="cuda")
    checkpointed = copy.deepcopy(plain)
    checkpoint_blocks(checkpointed)
    batch = torch.randint(0, cfg.model.vocab_size, (4, 2048), device="cuda")
    peaks, grads = [], []
    for model in (plain, checkpointed):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, g = _loss_and_grads(model, cfg, batch)
        peaks.append(torch.cuda.max_memory_allocated())
        grads.append(g)
        model.zero_grad(set_to_none=True)
    assert peaks[1] < 0.6 * peaks[0], [f"{p / 2**30:.2f} GiB" for p in peaks]
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-2, atol=1e-5, msg=k)
