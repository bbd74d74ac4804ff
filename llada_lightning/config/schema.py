"""Typed configuration schemas (dataclasses); YAML groups and dotlist overrides only compose them.

Every field here is a contract: YAML files in `configs/` and command-line overrides address them as
`group.key=value` (for example `model.n_layers=4`, `train.flops_budget=1e15`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    """A LLaMA-style decoder: pre-norm RMSNorm, RoPE, SwiGLU, no biases, optional GQA and tied embeddings.

    Its attention (causal or bidirectional) is not a field: it belongs to the objective (objectives/registry.py).

    `vocab_size` is the number of output classes (the head's columns). The mask token of a masked
    diffusion model is `mask_token_id`; when it is None the model reserves one extra embedding row at
    index `vocab_size` (the SMDM convention; the head still has `vocab_size` columns).
    """

    name: str = "custom"
    n_layers: int = 2
    n_heads: int = 2
    n_kv_heads: int = 2
    d_model: int = 64
    d_ff: int = 256
    vocab_size: int = 4096
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    mask_token_id: int | None = None
    # weight init scheme (models/initialization.py): gpt2 (normal(0, init_std), residual projections
    # init_std / sqrt(2 n_layers)) | smdm (SMDM lit_gpt `_init_weights`) | llada (OLMo "mitchell", LLaDA-8B)
    init: str = "gpt2"
    init_std: float = 0.02  # init=gpt2 only; smdm and llada derive every std from d_model, d_ff and n_layers
    # dtype the RoPE cos/sin tables are rounded to before use (always applied in float32): float32, or bfloat16
    # for SMDM's checkpoints (SMDM lit_gpt/diffmodel.py builds its tables in bfloat16)
    rope_table_dtype: str = "float32"

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def mask_id(self) -> int:
        """The id of the mask token fed to the network (never predicted by the head)."""
        return self.vocab_size if self.mask_token_id is None else self.mask_token_id

    @property
    def embedding_rows(self) -> int:
        """Input embedding rows: one extra row for the reserved mask token when it lies outside the vocab."""
        return self.vocab_size + 1 if self.mask_token_id is None else self.vocab_size


@dataclass
class AttentionConfig:
    """Attention kernel: `sdpa` (torch scaled_dot_product_attention, any device), `math` (sdpa's
    reference kernel, used for FLOP counting) or `flash` (flash-attn, CUDA only, optional extra)."""

    backend: str = "sdpa"


@dataclass
class DataConfig:
    """Where text comes from, how it is tokenised, and how it is cut into blocks."""

    # "embedded" (shipped Shakespeare corpus), "hf" (any `datasets` source) or "tokens" (`llada data prepare` shards)
    source: str = "embedded"
    paths: list[str] | None = None  # tokens: prepared directories (OUT_DIR of `llada data prepare`), mixed
    weights: list[float] | None = None  # tokens: one mixture weight per path (normalised); None: by training blocks
    path: str | None = None  # hf: a hub name ("wikitext") or a builder for local files ("text", "json")
    name: str | None = None  # hf: the dataset config name
    data_files: list[str] | None = None  # hf: local files for the builder in `path`
    split: str = "train"  # hf: the split to read; train/val are carved from it by document
    text_field: str = "text"
    tokenizer: str = "bpe"  # "bpe" (byte-level BPE trained on the corpus) or a path to a tokenizer.json
    eos_token: str | None = None  # file tokenizer: the document separator; None: "<|endoftext|>", "</s>", ...
    vocab_size: int = 4096  # bpe: vocabulary size including special tokens
    seq_len: int = 128  # tokens per training block
    val_fraction: float = 0.05  # fraction of documents held out for validation
    max_documents: int | None = None  # read at most this many documents (quick experiments)
    # train on a fixed subset of exactly this many training tokens, repeated for as many epochs as the run needs
    # (a multiple of seq_len; seeded by train.seed; a smaller value is a prefix of a larger one). None: all of it
    unique_tokens: int | None = None
    cache_dir: str | None = None  # default: $LLADA_CACHE or ~/.cache/llada_lightning
    num_workers: int = 0


@dataclass
class ObjectiveConfig:
    """The training objective: `llada` (masked diffusion, Nie et al. 2025) or `arm` (next-token prediction)."""

    name: str = "llada"
    schedule: str = "linear"  # llada: linear | cosine | polynomial
    schedule_power: float = 2.0  # polynomial schedule exponent k (alpha_t = 1 - t^k)
    eps: float = 1e-3  # llada: mask probability floor, p = (1 - eps) t + eps
    time_sampling: str = "iid"  # llada: iid | antithetic
    weighting: str = "elbo"  # llada: elbo | unweighted (an ablation, not an NLL bound)
    random_length_prob: float = 0.01  # llada: fraction of steps trained on a random length in [1, T]
    val_mask_draws: int = 4  # llada: K mask draws per validation block, fixed by the seed
    # SFT runs only: sample (LLaDA: per sample by its answer length, then the batch mean) | batch (SMDM: by the
    # batch's answer tokens) | token (by the masked answer tokens); objectives/sft.py
    sft_normalization: str = "sample"


@dataclass
class FSDPConfig:
    """`train.strategy=fsdp` (training/strategy.py): FSDP2 `fully_shard` on each Transformer block, then the root."""

    # full (FULL_SHARD: parameters, gradients and optimizer states sharded; parameters regathered in the backward)
    # | grad-op (SHARD_GRAD_OP: parameters kept gathered from the forward to the backward) | hybrid (HYBRID_SHARD:
    # sharded within a node, replicated across train.num_nodes nodes)
    sharding: str = "full"


@dataclass
class TrainConfig:
    """Optimisation, duration, precision, logging, checkpointing and devices."""

    seed: int = 0
    batch_size: int = 16  # sequences per device per micro-step
    accumulate_grad_batches: int = 1
    max_steps: int | None = None  # exactly one of max_steps and flops_budget is set
    # training FLOPs; steps = budget / (flops per token * tokens per step), counting every step at full length:
    # LLaDA's random-length steps then spend slightly less (result.json counts what was spent)
    flops_budget: float | None = None
    flops_convention: str = "6N"  # how flops_budget is counted: "6N" (Kaplan/SMDM) or "full" (flops.py)
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine/wsd end at lr * min_lr_ratio (SMDM: 10%)
    lr_schedule: str = "cosine"  # cosine | wsd | constant (all after linear warmup)
    warmup_fraction: float = 0.01  # warmup steps = max(warmup_min_steps, fraction * steps), capped
    warmup_min_steps: int = 0
    decay_fraction: float = 0.2  # wsd: final fraction of steps spent decaying
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping
    precision: str = "32-true"  # any Lightning precision: 32-true, bf16-mixed, 16-mixed, bf16-true
    val_every_n_steps: int = 100  # 0: validate only at the end
    val_batches: int = 8  # validation batches per evaluation (fixed, the same every time)
    validate_at_start: bool = False  # also score the untrained model (step 0 of the loss curve)
    ckpt_every_n_steps: int = 50
    log_every_n_steps: int = 10
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | fsdp (sharded per block: train.fsdp, training/strategy.py)
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)
    activation_checkpointing: bool = False  # recompute each Transformer block in the backward (less memory)
    progress_bar: bool = True
    deterministic: bool = False
    compile: bool = False
    loss_guard: bool = True  # stop with a clear error when the training loss becomes NaN/inf
    # peak FLOP/s of one device, for the MFU logged as perf/mfu; None: the GPU's dense bf16 peak from the table of
    # llada_lightning/hardware.py, or no MFU (CPU, an unknown GPU)
    peak_flops: float | None = None


@dataclass
class SFTConfig:
    """Supervised fine-tuning (`llada sft`): which pre-trained run it starts from, and its instruction data.

    An SFT run is any run whose `sft.parent` is set: it starts from the parent's weights and tokenizer and trains
    on conversations (sft/data.py) instead of `data.*` blocks; `data.seq_len` is the longest example it keeps.
    """

    parent: str | None = None  # the pre-trained run directory (or a checkpoint file inside one)
    source: str = "instructions"  # instructions (built-in synthetic set) | jsonl (local files) | hf (datasets)
    path: str | None = None  # hf: a hub name or a builder ("json"); jsonl: unused
    name: str | None = None  # hf: the dataset config name
    data_files: list[str] | None = None  # jsonl / hf builder: local files or globs
    split: str = "train"  # hf: the split; train/val are carved from it by conversation
    messages_field: str = "messages"  # a record's conversation: [{"role": ..., "content": ...}, ...]
    prompt_field: str = "prompt"  # or a prompt/response pair (used when the record has no messages_field)
    response_field: str = "response"
    system_field: str = "system"  # optional system message of a prompt/response record
    chat_template: str = "llada"  # llada (LLaDA's special-token layout) | tokenizer (its chat_template) | a file
    instructions: int = 4000  # source=instructions: number of generated conversations
    max_examples: int | None = None  # read at most this many conversations
    val_fraction: float = 0.05  # fraction of conversations held out (by a hash of their text)


@dataclass
class RunConfig:
    """A whole run: the four groups plus where it is written."""

    model: ModelConfig = field(default_factory=ModelConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    run_dir: str | None = None  # default: <runs_root>/<objective>-<model>-<signature>
    runs_root: str = "runs"
