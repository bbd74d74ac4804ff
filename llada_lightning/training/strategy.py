"""How a run is spread over devices: the Lightning strategy, and what is applied to the plain backbone from outside.

`train.strategy=fsdp` is FSDP2 (`torch.distributed.fsdp.fully_shard`) through Lightning's `ModelParallelStrategy`:
`BaseModule.configure_model` calls `parallelize`, which shards each Transformer block as its own unit and then the
root (embedding, final norm, head), as torchtitan's `apply_fsdp` does (torchtitan/models/llama3/infra/parallelize.py).
Why FSDP2 rather than Lightning's `FSDPStrategy` (FSDP1, `auto_wrap_policy={Block}`), on Lightning 2.6 + torch 2.13:
- FSDP1 is the legacy API; torch's FSDP2 notes (torch/distributed/fsdp/_fully_shard/_fully_shard.py) give per-parameter
  DTensor sharding, no flat parameters, hence optimizer states and checkpoints keyed by the model's own names;
- Lightning refuses `FSDPStrategy` unless the accelerator is CUDA (accelerator_connector.py,
  `_check_strategy_and_fallback`), while `ModelParallelStrategy` + `fully_shard` run on CPU processes over gloo, so
  the sharded path is tested on this machine (tests/training/test_fsdp.py), not only on a GPU;
- `ModelParallelStrategy(save_distributed_checkpoint=True)` writes torch.distributed.checkpoint shards (a directory,
  one file per rank, plus Lightning's `meta.pt`) that load on any world size.

Sharding (`train.fsdp.sharding`), FSDP1's names in brackets:
- full (FULL_SHARD): `reshard_after_forward=True` on the blocks: parameters are regathered for the backward;
- grad-op (SHARD_GRAD_OP): `reshard_after_forward=False`: kept gathered from the forward to the backward (torch's
  `fully_shard` docstring: trades memory for one all-gather less per block);
- hybrid (HYBRID_SHARD): a 2-D mesh (num_nodes, devices): sharded within a node, replicated across nodes (HSDP:
  `fully_shard` with a 2-D mesh uses the placement `(Replicate(), Shard(0))`).
The root is always `reshard_after_forward=None` (torch: False for the root, which the backward needs first).

Precision under fsdp: `bf16-mixed` is FSDP2's `MixedPrecisionPolicy(param_dtype=bfloat16, reduce_dtype=float32)`:
float32 sharded parameters and optimizer states, bfloat16 gathers and compute, float32 gradient reduce-scatter;
Lightning then runs `32-true` around it, with no autocast (torchtitan's `maybe_enable_amp` is a no-op when FSDP is on:
FSDP handles mixed precision). Blocks keep `cast_forward_inputs=False`: the RoPE tables reach `apply_rope` in float32
(they are forward arguments; casting them would round them to bfloat16, cf. `model.rope_table_dtype`). `bf16-true` is
Lightning's: every parameter and optimizer state in bfloat16. Both objectives upcast the logits to float32 before
their cross-entropy (objectives/llada.py `_masked_token_ce`, objectives/arm.py `_next_token_ce`), so the loss is
float32 under every precision. float16 is refused: FSDP2 would need a sharded gradient scaler.

Activation checkpointing (`train.activation_checkpointing`, any strategy): each block is wrapped in torch's
`checkpoint_wrapper` (`torch.utils.checkpoint.checkpoint(use_reentrant=False)`) before sharding, as torchtitan's
`apply_ac` does; the wrapper's state-dict hooks drop its prefix, so checkpoints keep the plain model's keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llada_lightning.config.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn
    from torch.distributed.device_mesh import DeviceMesh

    from llada_lightning.config.schema import TrainConfig

SHARDINGS = ("full", "grad-op", "hybrid")  # FULL_SHARD, SHARD_GRAD_OP, HYBRID_SHARD
FSDP_PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16-true")


def validate_strategy_config(t: TrainConfig) -> None:
    """The strategy keys of `train`, checked before any work: each bad combination is one ConfigError line."""
    if t.fsdp.sharding not in SHARDINGS:
        raise ConfigError(f"train.fsdp.sharding={t.fsdp.sharding!r} is not one of: {', '.join(SHARDINGS)}")
    if t.strategy != "fsdp":
        if t.fsdp.sharding != "full":
            raise ConfigError(
                f"train.fsdp.sharding={t.fsdp.sharding} applies only to train.strategy=fsdp (now "
                f"train.strategy={t.strategy}); set train.strategy=fsdp or drop train.fsdp.sharding"
            )
        return
    world = t.devices * t.num_nodes
    if world < 2:
        raise ConfigError(
            "train.strategy=fsdp shards over processes, but train.devices x train.num_nodes = 1; set train.devices>=2 "
            "(train.accelerator=cpu runs them as CPU processes) or use train.strategy=auto on one device"
        )
    if t.precision not in FSDP_PRECISIONS:
        raise ConfigError(
            f"train.precision={t.precision} is not supported with train.strategy=fsdp (float16 would need a sharded "
            f"gradient scaler); use one of: {', '.join(FSDP_PRECISIONS)}"
        )
    if t.fsdp.sharding == "hybrid" and (t.num_nodes < 2 or t.devices < 2):
        raise ConfigError(
            f"train.fsdp.sharding=hybrid shards within a node and replicates across nodes: it needs train.num_nodes>=2 "
            f"and train.devices>=2 (now {t.num_nodes} and {t.devices}); use train.fsdp.sharding=full"
        )
    if t.compile:
        raise ConfigError(
            "train.compile=true is not supported with train.strategy=fsdp (each block would have to be compiled "
            "before it is sharded, as torchtitan does); set train.compile=false"
        )


def build_strategy(t: TrainConfig) -> Any:
    """What `L.Trainer(strategy=...)` gets: Lightning's name for auto/ddp/..., a `ModelParallelStrategy` for fsdp.

    The strategy's own 2-D mesh is (data_parallel = every process, tensor_parallel = 1); `parallelize` shards over
    its data-parallel dimension (or builds the hybrid mesh). Sharded checkpoints: `save_distributed_checkpoint`.
    """
    if t.strategy != "fsdp":
        return t.strategy
    from lightning.pytorch.strategies import ModelParallelStrategy

    return ModelParallelStrategy(
        data_parallel_size=t.devices * t.num_nodes, tensor_parallel_size=1, save_distributed_checkpoint=True
    )


def trainer_precision(t: TrainConfig) -> str:
    """The precision Lightning runs: `train.precision`, except bf16-mixed under fsdp, which FSDP2's
    MixedPrecisionPolicy implements (`parallelize`), so Lightning adds no autocast around it: 32-true."""
    if t.strategy == "fsdp" and t.precision == "bf16-mixed":
        return "32-true"
    return t.precision


def parallelize(model: nn.Module, t: TrainConfig, mesh: DeviceMesh | None) -> None:
    """Apply activation checkpointing (if set), then FSDP2 (under fsdp) to `model` in place; idempotent (Lightning
    calls `configure_model` once per `fit`/`validate`). `mesh`: the LightningModule's `device_mesh`."""
    if t.activation_checkpointing:
        checkpoint_blocks(model)
    if t.strategy == "fsdp":
        if mesh is None:
            raise RuntimeError("train.strategy=fsdp: the Trainer's strategy set no device mesh (build_strategy)")
        shard(model, t, mesh)


def checkpoint_blocks(model: nn.Module) -> int:
    """Wrap each block of `model.layers` for activation checkpointing (non-reentrant); returns how many it wrapped."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper, checkpoint_wrapper

    wrapped = 0
    for i, block in enumerate(model.layers):  # type: ignore[arg-type]
        if isinstance(block, CheckpointWrapper):
            continue
        # torch.utils.checkpoint.checkpoint(use_reentrant=False); the blocks hold no RNG (no dropout): the
        # default preserve_rng_state=True costs nothing that matters and keeps any future dropout exact
        model.layers[i] = checkpoint_wrapper(block)  # type: ignore[index]
        wrapped += 1
    return wrapped


def fsdp_mesh(t: TrainConfig, mesh: DeviceMesh) -> DeviceMesh:
    """The mesh the blocks are sharded over: the strategy's data-parallel dimension, or (hybrid) a 2-D mesh of
    (replicate = num_nodes, shard = devices), the ranks of one node sharing a shard group."""
    if t.fsdp.sharding != "hybrid":
        return mesh["data_parallel"]
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(mesh.device_type, (t.num_nodes, t.devices), mesh_dim_names=("replicate", "shard"))


def mixed_precision(t: TrainConfig) -> Any:
    """FSDP2's MixedPrecisionPolicy for `train.precision` (see the module docstring)."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if t.precision == "bf16-mixed":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False)
    return MixedPrecisionPolicy(cast_forward_inputs=False)  # 32-true, bf16-true: the parameters' own dtype


def shard(model: nn.Module, t: TrainConfig, mesh: DeviceMesh) -> None:
    """`fully_shard` each block (one all-gather / reduce-scatter unit each), then the root; idempotent."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    if isinstance(model, FSDPModule):
        return
    dp_mesh = fsdp_mesh(t, mesh)
    policy = mixed_precision(t)
    reshard = t.fsdp.sharding != "grad-op"
    for block in model.layers:  # type: ignore[union-attr]
        fully_shard(block, mesh=dp_mesh, reshard_after_forward=reshard, mp_policy=policy)
    fully_shard(model, mesh=dp_mesh, reshard_after_forward=None, mp_policy=policy)
