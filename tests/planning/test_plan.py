"""`llada plan`: what each strategy shards, the cheapest setting that fits, the table and its JSON, bad input."""

from __future__ import annotations

import json

import pytest

from llada_lightning.cli import main
from llada_lightning.config import ladder
from llada_lightning.config.errors import ConfigError
from llada_lightning.flops import param_counts
from llada_lightning.planning import memory_estimate
from llada_lightning.planning.memory import GB
from llada_lightning.planning.proposal import parse_memory, propose

CFG = ladder()["smdm-1028m"]
N = param_counts(CFG)[1]


def test_mixed_precision_counts_master_weights_and_fp32_states() -> None:
    one = memory_estimate(CFG, 1, 2048, "bf16-mixed", strategy="auto", gpus=1)
    assert (one.params, one.grads, one.optimizer) == (4 * N, 4 * N, 8 * N)  # fp32 master, fp32 grads, 2 fp32 states
    half = memory_estimate(CFG, 1, 2048, "bf16-true", strategy="auto", gpus=1)
    assert (half.params, half.grads, half.optimizer) == (2 * N, 2 * N, 4 * N)  # AdamW's states in the param dtype
    ddp = memory_estimate(CFG, 1, 2048, "bf16-mixed", strategy="ddp", gpus=8)
    assert ddp.grads == 2 * one.grads and ddp.optimizer == one.optimizer  # DDP's buckets; nothing sharded


def test_fsdp_divides_what_each_sharding_shards() -> None:
    kw = dict(strategy="fsdp", gpus=16, gpus_per_node=8)
    full = memory_estimate(CFG, 1, 2048, "bf16-mixed", sharding="full", **kw)
    grad_op = memory_estimate(CFG, 1, 2048, "bf16-mixed", sharding="grad-op", **kw)
    hybrid = memory_estimate(CFG, 1, 2048, "bf16-mixed", sharding="hybrid", **kw)
    assert full.optimizer == 8 * N // 16 and hybrid.optimizer == 8 * N // 8 and grad_op.optimizer == full.optimizer
    assert grad_op.params > 2 * N > full.params  # grad-op keeps every bf16 unit gathered; full only a few
    assert full.grads < hybrid.grads
    # under fsdp, mixed precision is bf16 parameters without autocast: no weight copies, bf16 activations
    ddp = memory_estimate(CFG, 1, 2048, "bf16-mixed", strategy="ddp", gpus=16)
    assert full.activations < ddp.activations


def test_checkpointing_and_accumulation_change_what_lives_at_the_peak() -> None:
    off = memory_estimate(CFG, 8, 2048, "bf16-mixed", gpus=1, strategy="auto")
    on = memory_estimate(CFG, 8, 2048, "bf16-mixed", gpus=1, strategy="auto", checkpointing=True)
    assert on.activations < off.activations / 4 and on.total < off.total
    accumulating = memory_estimate(CFG, 8, 2048, "bf16-mixed", gpus=1, strategy="auto", accumulation=4)
    assert accumulating.total == off.total + off.grads  # gradients held through the later micro-batches' forward


def test_propose_prefers_no_checkpointing_then_the_largest_micro_batch() -> None:
    roomy = propose(CFG, gpu_memory=80 * GB, gpus=8, global_batch=256, seq_len=2048)
    assert roomy.fits and not roomy.checkpointing and roomy.micro_batch * roomy.accumulation * 8 == 256
    bigger = memory_estimate(CFG, 2 * roomy.micro_batch, 2048, "bf16-mixed", gpus=8, accumulation=1)
    assert bigger.total > 80 * GB  # the next micro-batch up does not fit
    tight = propose(CFG, gpu_memory=30 * GB, gpus=8, global_batch=256, seq_len=2048)
    assert tight.fits and tight.checkpointing  # no micro-batch fits without it
    hopeless = propose(ladder()["llada-8b"], gpu_memory=24 * GB, gpus=8, global_batch=256, seq_len=4096)
    assert not hopeless.fits and hopeless.checkpointing  # the least memory, still too much


def test_plan_prints_one_table_and_json(capsys) -> None:
    assert main(["plan", "smdm-1028m", "--gpus", "8", "--gpu-memory", "80GB"]) == 0
    out = capsys.readouterr().out
    assert "smdm-1028m" in out and "micro x acc" in out and "act off/on" in out
    assert main(["plan", "--prefix", "smdm-", "--gpus", "8", "--gpu-memory", "80GB", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["model"] for r in rows] == list(ladder("smdm-"))
    assert all(r["fits"] and r["total"] <= 80e9 and r["micro_batch"] * r["accumulation"] * 8 == 256 for r in rows)
    assert {"params", "grads", "optimizer", "activations", "logits", "overhead", "activations_ckpt"} <= set(rows[0])


@pytest.mark.parametrize(("args", "message"), [
    (["smdm-1028m", "--gpu-memory", "eighty"], "memory 'eighty'"),
    (["smdm-1028m", "--gpus", "3"], "--global-batch 256 is not a multiple of --gpus 3"),
    (["smdm-1028m", "--gpus", "8", "--micro-batch", "3"], "--micro-batch 3 does not divide the per-GPU batch 32"),
    (["gpt-5"], "model 'gpt-5': not a ladder size"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, capsys) -> None:
    assert main(["plan", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_memory_units() -> None:
    assert parse_memory("80GB") == 80e9 and parse_memory("80GiB") == 80 * 2**30 and parse_memory("141") == 141e9
    with pytest.raises(ConfigError):
        parse_memory("80 parsecs")
