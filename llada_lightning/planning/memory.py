"""Per-GPU training memory of this backbone, by formula: plain Python over `ModelConfig` (no torch).

Five parts, each in bytes on one GPU:
- params, grads, optimizer: per parameter, by precision (`PRECISIONS`) and strategy. AdamW holds exp_avg and
  exp_avg_sq in the parameter's dtype (torch.optim.AdamW). Under mixed precision the stored float32 parameters are
  the master weights: 4 (master) + 4 (fp32 gradients) + 8 (states) = 16 bytes per parameter, plus the 16-bit working
  copies (Rajbhandari et al. 2020, "ZeRO", Sec. 3.1: 2 + 2 + 12 with fp16 gradients). Under autocast (ddp, one
  device) the working copies are autocast's bf16 casts of the matmul weights, which the matmuls save for backward
  (counted with the activations, where they live); under fsdp (training/strategy.py: FSDP2 `fully_shard` on each
  block, then the root) they are the gathered bf16 units of `MixedPrecisionPolicy(param_dtype=bfloat16)`, with no
  autocast, so the activations are those of bf16. Sharding (ZeRO stages 2 and 3): `grad-op` keeps every unit
  gathered from the forward to the backward and divides the gradients and optimizer states (and the stored
  parameters) by the shard group; `full` gathers the root and `FSDP_UNITS_IN_FLIGHT` blocks at a time; `hybrid` is
  `full` within a node of `gpus_per_node`, replicated across nodes. DDP keeps a second copy of the gradients in its
  communication buckets (Li et al. 2020, "PyTorch Distributed", Sec. 3.2.3; gradient_as_bucket_view=False, torch's
  and Lightning's default).
- activations: the bytes autograd holds for backward, derived op by op for models/{layers,attention,
  transformer}.py as Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models",
  Sec. 4.1) derive 34 s b h + 5 a s^2 b for GPT (`layer_bytes_per_token`). With activation checkpointing of each
  block (their "full recomputation"; training/strategy.py `checkpoint_blocks`) a block keeps only its input, and the
  backward recomputes one block at a time.
- logits: the head's [tokens, vocab] logits and the cross-entropy's float32 log-softmax (objectives/llada.py
  upcasts the masked rows, objectives/arm.py the shifted ones): at seq 2048 and vocab 32000 the biggest term after
  the weights. LLaDA's worst step masks every token (t near 1), so its loss covers every token.
- overhead: a fixed `DEFAULT_OVERHEAD` for what the formulas leave out (CUDA context, cuBLAS and NCCL workspaces,
  the caching allocator's fragmentation): stated, not derived.

`MemoryEstimate.total` adds the peak over a step's phases (`memory_estimate`) of what changes within it
(gradients, activations, logits) to what does not. `torch.compile` (fused kernels save fewer intermediates) is not
modelled. tests/planning checks the activations against the bytes autograd saves on CPU
(`torch.autograd.graph.saved_tensors_hooks`) and the peak of a forward and backward (torch.profiler's memory events).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import ModelConfig
from llada_lightning.flops import matmul_params, param_counts

GB = 1e9
# CUDA context (~0.5 GB), cuBLAS and NCCL workspaces, allocator fragmentation: stated, not derived
DEFAULT_OVERHEAD = 2 * GB
FSDP_UNITS_IN_FLIGHT = 2  # the unit computing and the one prefetched (FSDP's default backward prefetch)
ATTENTION = ("sdpa", "flash", "math")
STRATEGIES = ("auto", "ddp", "fsdp")
SHARDING = ("full", "hybrid", "grad-op")


@dataclass(frozen=True)
class Precision:
    """Bytes per element of each kind of tensor under one Lightning precision."""

    name: str
    mode: str  # activations: fp32 | mixed (autocast: fp32 residual stream, 16-bit matmuls) | half (16-bit)
    residual: int  # the residual stream (embedding output, block sums): fp32 under autocast
    compute: int  # matmul outputs (activations between the norms)
    stored: int  # the parameters as stored (under mixed precision: the fp32 master weights)
    working: int  # the weights the matmuls read
    grad: int
    optim: int  # AdamW's two states, in the parameter's dtype


_FP32 = Precision("32-true", "fp32", residual=4, compute=4, stored=4, working=4, grad=4, optim=8)
_HALF = Precision("bf16-true", "half", residual=2, compute=2, stored=2, working=2, grad=2, optim=4)
PRECISIONS: dict[str, Precision] = {
    "32-true": _FP32,
    "32": _FP32,
    "bf16-mixed": Precision("bf16-mixed", "mixed", residual=4, compute=2, stored=4, working=2, grad=4, optim=8),
    "16-mixed": Precision("16-mixed", "mixed", residual=4, compute=2, stored=4, working=2, grad=4, optim=8),
    "bf16-true": _HALF,
    "16-true": Precision("16-true", "half", residual=2, compute=2, stored=2, working=2, grad=2, optim=4),
}


def precision(name: str) -> Precision:
    if name not in PRECISIONS:
        raise ConfigError(f"precision {name!r} is not planned; choose one of: {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


def activation_precision(name: str, strategy: str) -> Precision:
    """The precision the activations follow: under fsdp, mixed precision is FSDP2's bf16 parameters without
    autocast (training/strategy.py `mixed_precision`), so the activations are those of bf16-true."""
    p = precision(name)
    return _HALF if strategy == "fsdp" and p.mode == "mixed" else p


def _norm_bytes(d: int, p: Precision, consumers: int) -> int:
    """RMSNorm (layers.py) per token: `pow` saves its fp32 input, `* rsqrt` saves it and the [T, 1] rsqrt,
    `* weight` saves the normalised value, and the matmuls reading the output save it (under autocast each one
    its own bf16 cast: autocast caches casts of leaf weights only)."""
    rsqrt = 4
    if p.mode == "fp32":
        return 4 * d + 4 * d + 4 * d + rsqrt  # input, normalised, output (one tensor for all consumers)
    if p.mode == "mixed":
        return 4 * d + 4 * d + consumers * p.compute * d + rsqrt
    return 4 * d + p.compute * d + p.compute * d + rsqrt  # half: x.float(), normalised cast back, output


def layer_bytes_per_token(cfg: ModelConfig, seq_len: int, prec: str | Precision, attention: str = "sdpa") -> int:
    """Bytes one block saves for backward per token (Korthikanti et al. 2022's derivation, for this block).

    Pre-norm block `x + attn(norm(x))`, `x + ffn(norm(x))`: the residual sums save nothing. RoPE multiplies by
    constant tables, so it saves only the tables (once per forward, `_rope_bytes`). SDPA's flash and efficient
    kernels save q, k, v (GQA heads repeated by attention.py, except flash-attn's native GQA), the output and a
    float32 logsumexp per head, and never the s^2 scores; the output is reshaped into `wo` without a copy. The
    math kernel saves the softmax probabilities (h s per token, the 5 a s^2 b term of Korthikanti et al.), the
    scaled q, k and v, and a copy of the output (counted in the compute dtype; on CPU torch computes half inputs
    of the math kernel in float32, so tests/planning checks it in float32). Causal or bidirectional makes no
    difference. SwiGLU saves the gate and up projections, silu of the gate and their product (4 d_ff).
    """
    p = precision(prec) if isinstance(prec, str) else prec
    if attention not in ATTENTION:
        raise ConfigError(f"attention {attention!r} is not one of: {', '.join(ATTENTION)}")
    d, f, h = cfg.d_model, cfg.d_ff, cfg.n_heads
    kv = cfg.n_kv_heads * cfg.head_dim
    c = p.compute
    if attention == "flash":
        attn = c * (d + 2 * kv) + c * d + 4 * h  # q, k, v (native GQA), output, logsumexp
    elif attention == "sdpa":
        attn = 3 * c * d + c * d + 4 * h
    else:  # math: probabilities [h, s] per token, scaled q, k, v, and the output's reshape copy
        attn = 3 * c * d + c * h * seq_len + c * d
    ffn = 4 * c * f
    return _norm_bytes(d, p, consumers=3) + attn + _norm_bytes(d, p, consumers=2) + ffn


def _rope_bytes(cfg: ModelConfig, seq_len: int) -> int:
    return 2 * 4 * seq_len * cfg.head_dim  # the float32 cos and sin tables, saved once for all layers


@dataclass
class ActivationEstimate:
    """Activation memory of one micro-batch, in bytes."""

    layers: int  # what the blocks hold for backward (with checkpointing: their inputs)
    head: int  # final norm, token ids, loss indices, RoPE tables
    log_softmax: int  # the float32 log-softmax the cross-entropy saves (loss tokens x vocab)
    logits_transient: int  # logits, their masked/shifted copy and its fp32 upcast, alive while the loss is computed
    # autocast's bf16 copies of the matmul weights (mixed precision): the matmuls save them for backward, and
    # autocast's cache keeps them all until the forward leaves autocast, checkpointed blocks' included
    weight_copies: int
    recompute: int  # checkpointing: one block recomputed in the backward, its weight copies, its gradient (else 0)

    @property
    def saved(self) -> int:
        """What autograd holds at the end of the forward: layers, head, log-softmax and weight copies."""
        return self.layers + self.head + self.log_softmax + self.weight_copies

    @property
    def logits(self) -> int:
        """The head's bytes while the loss is computed: the saved log-softmax and the transient logits."""
        return self.log_softmax + self.logits_transient


def activation_estimate(
    cfg: ModelConfig,
    micro_batch: int,
    seq_len: int,
    prec: str | Precision = "bf16-mixed",
    *,
    checkpointing: bool = False,
    attention: str = "sdpa",
    objective: str = "llada",
    loss_fraction: float | None = None,
) -> ActivationEstimate:
    """Activation bytes of a training micro-batch of `micro_batch` x `seq_len` tokens.

    `loss_fraction`: the fraction of tokens whose logits enter the loss (LLaDA: the masked ones; default 1, its
    worst step; ARM: (T-1)/T). Checkpointing is per block (each block's input kept, the block recomputed).
    """
    p = precision(prec) if isinstance(prec, str) else prec
    tokens = micro_batch * seq_len
    if loss_fraction is None:
        loss_fraction = (seq_len - 1) / seq_len if objective == "arm" else 1.0
    loss_tokens = round(loss_fraction * tokens)
    per_layer = layer_bytes_per_token(cfg, seq_len, p, attention)
    v = cfg.vocab_size
    mixed = p.mode == "mixed"
    block_copies = p.working * matmul_params(cfg) // cfg.n_layers if mixed else 0
    copies = p.working * (matmul_params(cfg) + v * cfg.d_model) if mixed else 0
    if checkpointing:
        layers = cfg.n_layers * p.residual * cfg.d_model * tokens
        # one block recomputed, its weight copies and the gradient of its output
        recompute = per_layer * tokens + block_copies + 2 * p.residual * cfg.d_model * tokens
    else:
        layers, recompute = cfg.n_layers * per_layer * tokens, 0
    # final norm feeding the head; token ids (embedding backward) and the loss's int64 indices and targets
    bookkeeping = 8 * tokens + 24 * loss_tokens
    head = _norm_bytes(cfg.d_model, p, consumers=1) * tokens + bookkeeping + _rope_bytes(cfg, seq_len)
    log_softmax = 4 * v * loss_tokens
    upcast = 4 * v * loss_tokens if p.compute < 4 else 0
    transient = p.compute * v * tokens + p.compute * v * loss_tokens + upcast
    return ActivationEstimate(layers, head, log_softmax, transient, copies, recompute)


@dataclass
class MemoryEstimate:
    """Per-GPU bytes of one configuration. `total` = params + optimizer + overhead + `dynamic`, the step's peak
    of gradients, activations and logits, which do not all live at once (each column shows its own largest)."""

    params: int
    grads: int
    optimizer: int
    activations: int  # what the blocks and the head hold at the end of the forward (checkpointing: block inputs)
    logits: int  # logits and the float32 cross-entropy while the loss is computed
    overhead: int
    dynamic: int  # max over the step's phases of live gradients + activations + logits (`phase`)
    phase: str  # where that peak is: forward end, backward start (checkpointing), backward end, optimizer step
    activations_no_ckpt: int = 0  # `activations` without and with checkpointing (same micro-batch)
    activations_ckpt: int = 0
    phases: dict[str, int] = field(default_factory=dict)  # every phase's live gradients + activations + logits
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.params + self.optimizer + self.overhead + self.dynamic

    def as_dict(self) -> dict[str, int | str | list[str]]:
        return {**asdict(self), "total": self.total}


def _shard_group(strategy: str, sharding: str, gpus: int, gpus_per_node: int) -> int:
    if strategy != "fsdp":
        return 1
    if sharding == "hybrid":
        return max(1, min(gpus, gpus_per_node))
    return gpus


def memory_estimate(
    cfg: ModelConfig,
    micro_batch: int,
    seq_len: int,
    prec: str = "bf16-mixed",
    *,
    strategy: str = "ddp",
    sharding: str = "full",
    gpus: int = 1,
    gpus_per_node: int = 8,
    checkpointing: bool = False,
    accumulation: int = 1,
    attention: str = "sdpa",
    objective: str = "llada",
    overhead: float = DEFAULT_OVERHEAD,
) -> MemoryEstimate:
    """Per-GPU memory of training `cfg` at `micro_batch` x `seq_len` on `gpus` GPUs under `strategy`.

    strategy: `ddp` (everything replicated), `fsdp` with `sharding` full | hybrid | grad-op, or `auto` (one GPU:
    one device; several: DDP, as Lightning chooses). The phases of a step, between which memory changes linearly
    (so its peak is at one of them): the forward's end (activations and logits; gradients only while accumulating,
    `accumulation` > 1, since Lightning sets them to None after each optimizer step, and DDP's buckets), with
    checkpointing the backward's start (the last block recomputed, the head's gradients written), and the
    backward's end (every gradient but the embedding's, written last; with checkpointing the first block
    recomputed), and the optimizer step (every gradient, and the one state-sized temporary of AdamW's foreach
    implementation, torch's default on CUDA: the square root of exp_avg_sq, torch/optim/adam.py `_multi_tensor_adam`).
    """
    p = precision(prec)
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy {strategy!r} is not one of: {', '.join(STRATEGIES)}")
    if sharding not in SHARDING:
        raise ConfigError(f"sharding {sharding!r} is not one of: {', '.join(SHARDING)}")
    if strategy == "auto":
        strategy = "ddp" if gpus > 1 else "single"
    n = param_counts(cfg)[1]
    d = cfg.d_model
    block = matmul_params(cfg) // cfg.n_layers + 2 * d
    root = n - cfg.n_layers * block  # embedding, final norm, head
    embedding = cfg.embedding_rows * d if not cfg.tie_embeddings else 0
    shards = _shard_group(strategy, sharding, gpus, gpus_per_node)
    act_p = activation_precision(prec, strategy)
    acts = activation_estimate(
        cfg, micro_batch, seq_len, act_p, checkpointing=checkpointing, attention=attention, objective=objective
    )
    notes: list[str] = []
    optimizer = p.optim * n // shards
    buckets = 0
    if strategy in ("ddp", "single"):
        params, grads, scale = p.stored * n, p.grad * n, 1.0
        if strategy == "ddp":
            buckets = p.grad * n
            notes.append("ddp: gradients twice (param.grad and the communication buckets)")
    else:
        gathered = n if sharding == "grad-op" else root + FSDP_UNITS_IN_FLIGHT * block
        params = p.stored * n // shards + (p.working * gathered if shards > 1 or p.working != p.stored else 0)
        # one block's unsharded gradient in flight (and its float32 copy for the reduce-scatter under mixed)
        in_flight = (p.working + (p.grad if p.grad != p.working else 0)) * block if shards > 1 else 0
        grads, scale = p.grad * n // shards + in_flight, 1.0 / shards
    if p.mode == "mixed":
        notes.append("mixed precision: the stored float32 parameters are the optimizer's master weights")
    held = buckets + (grads if accumulation > 1 else 0)  # gradients alive during the forward
    phases = {"forward end": held + acts.weight_copies + acts.layers + acts.head + acts.logits}
    if checkpointing:
        head_grads = round(p.grad * (root - embedding + block) * scale)
        phases["backward start"] = held + head_grads + acts.layers + acts.head + acts.recompute
        first = act_p.residual * d * micro_batch * seq_len + acts.recompute
    else:
        first = 0
    phases["backward end"] = buckets + grads - round(p.grad * embedding * scale) + first + acts.head
    phases["optimizer step"] = buckets + p.grad * n // shards + p.optim // 2 * n // shards
    phase = max(phases, key=lambda k: phases[k])
    no_ckpt = activation_estimate(cfg, micro_batch, seq_len, act_p, attention=attention, objective=objective)
    ckpt = activation_estimate(
        cfg, micro_batch, seq_len, act_p, checkpointing=True, attention=attention, objective=objective
    )
    return MemoryEstimate(
        params=params,
        grads=grads + buckets,
        optimizer=optimizer,
        activations=acts.layers + acts.head + acts.weight_copies,
        logits=acts.logits,
        overhead=int(overhead),
        dynamic=phases[phase],
        phase=phase,
        activations_no_ckpt=no_ckpt.layers + no_ckpt.head + no_ckpt.weight_copies,
        activations_ckpt=ckpt.layers + ckpt.head + ckpt.weight_copies,
        phases=phases,
        notes=notes,
    )
