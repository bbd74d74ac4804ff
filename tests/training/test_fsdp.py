"""train.strategy=fsdp on this CPU machine: FSDP2 (`fully_shard` per block) in two processes over gloo.

Three `llada train` launches of a tiny ARM, two ranks each (~15 s apiece, mostly the two processes' imports):
- `full`: uninterrupted, train.fsdp.sharding=full; every rank writes what it holds of each block at the end;
- `stopped`: train.fsdp.sharding=grad-op, stopped at step 2 as if preempted (SIGTERM flag at the step boundary:
  the sharded checkpoint is saved, exit 75), then `resumed` by the same command to the end.
and one single process with the same global batch (2 ranks x 2 = 1 x 4 sequences; the data module gives rank r the
r-th half of every global batch). The ARM draws no random numbers, so the two layouts compute the same loss; LLaDA's
mask draws come from per-rank generators (training/modules.py `_step_generator`), which a different world size
changes by design.

LLADA_TEST_ACCELERATOR=gpu runs the same on a machine with two or more GPUs (NCCL instead of gloo).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from llada_lightning.config.compose import compose
from llada_lightning.training.checkpoint import read_checkpoint
from llada_lightning.training.run import train

pytestmark = pytest.mark.slow  # three two-process launches (~40 s on 2 cores)
ACCELERATOR = os.environ.get("LLADA_TEST_ACCELERATOR", "cpu")

COMMON = [
    "objective=arm",
    "model=cpu-0.1m",
    "data.seq_len=32",
    "train.max_steps=4",
    "train.val_every_n_steps=0",
    "train.grad_clip=0.05",  # small: clipping acts at every step, so the global gradient norm over shards is tested
    "train.progress_bar=false",
    f"train.accelerator={ACCELERATOR}",
]
# the same global batch and the same validation blocks (val_batches x batch_size, split across ranks)
SHARDED = [*COMMON, "train.strategy=fsdp", "train.devices=2", "train.batch_size=2", "train.val_batches=2"]
SINGLE = [*COMMON, "train.batch_size=4", "train.val_batches=1"]

WRAPPER = textwrap.dedent(
    """
    import json, os, signal, sys
    from llada_lightning.training.modules import BaseModule
    from llada_lightning.training.preemption import PreemptionHandler

    stop = int(os.environ.get("STOP_AT_STEP", "0"))
    on_batch_end = PreemptionHandler.on_train_batch_end

    def preempt_at(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == stop:
            self.signal_received = signal.SIGTERM  # as the signal handler would, at this step boundary
        on_batch_end(self, trainer, pl_module, outputs, batch, batch_idx)

    def record_shards(self):
        from torch.distributed.fsdp import FSDPModule
        if "SHARD_LOG" not in os.environ:
            return
        blocks = [
            [sum(p.to_local().numel() for p in b.parameters()), sum(p.numel() for p in b.parameters())]
            for b in self.model.layers
        ]
        units = sum(isinstance(m, FSDPModule) for m in self.model.modules())
        with open(os.path.join(os.environ["SHARD_LOG"], f"rank{self.global_rank}.json"), "w") as f:
            json.dump({"units": units, "blocks": blocks}, f)

    PreemptionHandler.on_train_batch_end = preempt_at
    BaseModule.on_train_end = record_shards
    from llada_lightning.cli import main

    sys.exit(main())
    """
)


def _launch(tmp: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    wrapper = tmp / "wrapper.py"
    wrapper.write_text(WRAPPER)
    proc = subprocess.run(
        [sys.executable, str(wrapper), "train", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("fsdp")
    shards = tmp / "shards"
    shards.mkdir()
    full = _launch(tmp, [*SHARDED, f"run_dir={tmp / 'full'}"], SHARD_LOG=str(shards))
    assert full.returncode == 0, full.stdout + full.stderr
    resumed_args = [*SHARDED, "train.fsdp.sharding=grad-op", f"run_dir={tmp / 'resumed'}"]
    stopped = _launch(tmp, resumed_args, STOP_AT_STEP="2")
    assert stopped.returncode == 75, stopped.stdout + stopped.stderr  # stopped early, resumable
    stopped_at = read_checkpoint(tmp / "resumed" / "checkpoints" / "last.ckpt")["global_step"]
    resumed = _launch(tmp, resumed_args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    shutil.copytree(tmp / "resumed", tmp / "corrupt")
    (tmp / "corrupt" / "result.json").unlink()  # as if killed after its last checkpoint, which then lost a shard
    (tmp / "corrupt" / "checkpoints" / "last.ckpt" / "__1_0.distcp").unlink()
    corrupt = _launch(tmp, [*resumed_args[:-1], f"run_dir={tmp / 'corrupt'}"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(compose([*SINGLE, f"run_dir={tmp / 'single'}"]))
    finally:
        torch.set_num_threads(before)
    return {
        "full": tmp / "full",
        "resumed": tmp / "resumed",
        "single": tmp / "single",
        "shards": [json.loads((shards / f"rank{r}.json").read_text()) for r in (0, 1)],
        "stopped_at": stopped_at,
        "resumed_out": resumed.stdout,
        "corrupt": corrupt,
        "corrupt_dir": tmp / "corrupt",
    }


def test_each_block_is_its_own_fsdp_unit_and_each_rank_holds_half_of_it(runs: dict[str, Any]) -> None:
    n_layers = compose(SHARDED).model.n_layers
    ranks = runs["shards"]
    assert [r["units"] for r in ranks] == [n_layers + 1] * 2  # one per block, and the root (embedding, norm, head)
    for i in range(n_layers):
        local = [r["blocks"][i][0] for r in ranks]
        full = ranks[0]["blocks"][i][1]
        assert sum(local) == full  # the two shards make the block, nothing replicated
        assert all(abs(n - full / 2) <= 0.05 * full for n in local), (i, local, full)


def test_sharded_training_equals_one_process_with_the_same_global_batch(runs: dict[str, Any]) -> None:
    sharded, single = _weights(runs["full"]), _weights(runs["single"])
    assert sharded.keys() == single.keys()
    # 4 AdamW steps apart only by the order of float32 reductions: 5.5e-6 at most here; one step moves a weight by
    # up to the peak LR, 3e-3
    for key in single:
        torch.testing.assert_close(sharded[key], single[key], rtol=1e-4, atol=2e-5, msg=key)
    a, b = (json.loads((runs[k] / "result.json").read_text()) for k in ("full", "single"))
    assert (a["tokens"], a["flops_6N"], a["steps"], a["world_size"]) == (b["tokens"], b["flops_6N"], 4, 2)
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)  # the same 4 validation blocks


def test_a_sharded_checkpoint_resumes_to_the_uninterrupted_weights(runs: dict[str, Any]) -> None:
    # grad-op (stopped, resumed) and full (uninterrupted) differ in when they all-gather, not in what they compute
    assert runs["stopped_at"] == 2
    assert "resuming at step 2 of 4 from" in runs["resumed_out"]
    last = runs["resumed"] / "checkpoints" / "last.ckpt"
    assert last.is_dir() and sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # nothing left aside
    resumed, full = _weights(runs["resumed"]), _weights(runs["full"])
    assert resumed.keys() == full.keys()
    assert all(torch.equal(resumed[k], full[k]) for k in full), [
        k for k in full if not torch.equal(resumed[k], full[k])
    ]


def test_a_sharded_run_loads_for_inference(runs: dict[str, Any]) -> None:
    from llada_lightning.inference.loading import load_run

    loaded = load_run(runs["full"])
    weights = _weights(runs["full"])
    assert all(torch.equal(t, weights[f"model.{k}"]) for k, t in loaded.model.state_dict().items())


def test_a_sharded_checkpoint_missing_a_shard_is_one_line_and_kept(runs: dict[str, Any]) -> None:
    proc, last = runs["corrupt"], runs["corrupt_dir"] / "checkpoints" / "last.ckpt"
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = f"llada: config error: {last} is not a readable checkpoint (rank 1: [Errno 2] No such file or directory: "
    assert line in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert sorted(p.name for p in last.iterdir()) == [".metadata", "__0_0.distcp", "meta.pt"]  # left as it was
