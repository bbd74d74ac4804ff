"""Consistency checks run before any work starts: each problem is one `ConfigError` line with its fix."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import RunConfig
from llada_lightning.data.corpus import SOURCES
from llada_lightning.flops import CONVENTIONS, flops_per_token, tokens_per_step, total_steps
from llada_lightning.models.attention import BACKENDS
from llada_lightning.models.initialization import INIT_SCHEMES
from llada_lightning.objectives.registry import validate_objective_config
from llada_lightning.training.lr_schedule import LR_SCHEDULES
from llada_lightning.training.strategy import validate_strategy_config

STRATEGIES = ("auto", "ddp", "fsdp", "ddp_spawn", "single_device")  # Lightning's names for these strategies
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")  # Lightning's


def _one_of(key: str, value: object, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(options)}")


def _positive(key: str, value: float | int | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero) or (isinstance(value, float) and not math.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}={value} must be {bound}")


def _validate_model(cfg: RunConfig) -> None:
    m = cfg.model
    for key in ("n_layers", "n_heads", "n_kv_heads", "d_model", "d_ff", "vocab_size", "max_seq_len"):
        _positive(f"model.{key}", getattr(m, key))
    if m.d_model % m.n_heads:
        raise ConfigError(
            f"model.d_model={m.d_model} is not divisible by model.n_heads={m.n_heads}; choose n_heads dividing d_model"
        )
    if m.n_heads % m.n_kv_heads:
        raise ConfigError(
            f"model.n_heads={m.n_heads} is not a multiple of model.n_kv_heads={m.n_kv_heads}; "
            "choose n_kv_heads dividing n_heads"
        )
    if m.head_dim % 2:
        raise ConfigError(f"head dim d_model/n_heads={m.head_dim} is odd; RoPE needs an even head dimension")
    _positive("model.rope_theta", m.rope_theta)
    _positive("model.norm_eps", m.norm_eps)
    if m.init not in INIT_SCHEMES:
        raise ConfigError(
            f"model.init={m.init!r} is not an init scheme; set model.init to one of: {', '.join(INIT_SCHEMES)} "
            "(gpt2: normal(0, init_std) with scaled residuals; smdm: SMDM's; llada: OLMo mitchell, LLaDA-8B's)"
        )
    _positive("model.init_std", m.init_std)
    if m.mask_token_id is not None and not 0 <= m.mask_token_id < m.vocab_size:
        raise ConfigError(
            f"model.mask_token_id={m.mask_token_id} is outside [0, vocab_size={m.vocab_size}); "
            "set it inside the vocabulary or null to reserve an extra embedding row"
        )


def _validate_objective(cfg: RunConfig) -> None:
    validate_objective_config(cfg.objective)  # the objective group's one validator, beside its registry


def _validate_data(cfg: RunConfig) -> None:
    d = cfg.data
    _one_of("data.source", d.source, SOURCES)
    if d.source == "hf" and not d.path:
        raise ConfigError("data.source=hf needs data.path (a hub dataset name, or 'text'/'json' with data.data_files)")
    if d.source == "tokens":
        _validate_tokens(cfg)
    elif d.paths is not None or d.weights is not None:
        raise ConfigError("data.paths and data.weights are read with data.source=tokens only; set it, or drop them")
    _positive("data.seq_len", d.seq_len)
    if d.seq_len > cfg.model.max_seq_len:
        raise ConfigError(
            f"data.seq_len={d.seq_len} exceeds the context of model {cfg.model.name} "
            f"(model.max_seq_len={cfg.model.max_seq_len}); lower data.seq_len or raise model.max_seq_len"
        )
    if not 0.0 < d.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={d.val_fraction} must lie in (0, 1)")
    if d.tokenizer == "bpe" and d.vocab_size < 257:
        raise ConfigError(f"data.vocab_size={d.vocab_size} is below the 256 bytes + EOS of a byte-level BPE")
    _positive("data.max_documents", d.max_documents)
    _positive("data.num_workers", d.num_workers, allow_zero=True)
    _validate_unique_tokens(cfg)
    if d.source != "tokens" and d.tokenizer != "bpe" and not Path(d.tokenizer).expanduser().is_file():
        raise ConfigError(
            f"data.tokenizer={d.tokenizer!r}: no such file; give the path to a HF tokenizer.json, or 'bpe' "
            "to train a byte-level BPE on the corpus"
        )
    # a tokenizer file's own vocabulary is checked against model.vocab_size when the data is prepared
    if d.source != "tokens" and d.tokenizer == "bpe" and cfg.model.vocab_size < d.vocab_size:
        raise ConfigError(
            f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's vocabulary ({d.vocab_size}); "
            f"set model.vocab_size>={d.vocab_size} or a smaller data.vocab_size"
        )


def _validate_tokens(cfg: RunConfig) -> None:
    """data.source=tokens: prepared directories (their manifest read here: cheap), weights, the model's vocabulary."""
    from llada_lightning.data.shards import prepared_vocab_size

    d = cfg.data
    if not d.paths:
        raise ConfigError("data.source=tokens needs data.paths=[DIR,...]: directories written by `llada data prepare`")
    if d.weights is not None:
        if len(d.weights) != len(d.paths):
            raise ConfigError(f"data.weights has {len(d.weights)} entries for {len(d.paths)} data.paths; give one each")
        if not all(math.isfinite(w) and w > 0 for w in d.weights):
            raise ConfigError(f"data.weights={list(d.weights)} must all be positive; leave a set out of data.paths")
    if d.tokenizer != "bpe":
        raise ConfigError(
            "data.tokenizer is not read with data.source=tokens: the prepared sets bring their own tokenizer.json; "
            "drop data.tokenizer (or prepare the data with `llada data prepare --tokenizer FILE`)"
        )
    if d.max_documents is not None:
        raise ConfigError("data.max_documents is not read with data.source=tokens; drop it (prepare fewer documents)")
    if d.unique_tokens is not None and len(d.paths) > 1:
        raise ConfigError("data.unique_tokens takes one prepared set; give one data.paths entry, or drop it")
    vocab = max(prepared_vocab_size(p, f"data.paths[{k}]") for k, p in enumerate(d.paths))
    if cfg.model.vocab_size < vocab:
        raise ConfigError(
            f"model.vocab_size={cfg.model.vocab_size} is smaller than the prepared data's vocabulary ({vocab}); "
            f"set model.vocab_size>={vocab}"
        )


def _validate_unique_tokens(cfg: RunConfig) -> None:
    """data.unique_tokens: whole blocks, at least one micro-batch (the split's size is checked at set-up)."""
    u, seq_len = cfg.data.unique_tokens, cfg.data.seq_len
    if u is None:
        return
    _positive("data.unique_tokens", u)
    batch = cfg.train.batch_size * seq_len
    if u < batch:
        raise ConfigError(
            f"data.unique_tokens={u} is smaller than one batch (train.batch_size={cfg.train.batch_size} x "
            f"data.seq_len={seq_len} = {batch} tokens); raise it to at least {batch} or lower train.batch_size"
        )
    if u % seq_len:
        lo, hi = u // seq_len * seq_len, (u // seq_len + 1) * seq_len
        raise ConfigError(
            f"data.unique_tokens={u} is not a whole number of data.seq_len={seq_len}-token blocks; use {lo} or {hi}"
        )


def _validate_train(cfg: RunConfig) -> None:
    t = cfg.train
    for key in ("batch_size", "accumulate_grad_batches", "devices", "num_nodes", "lr", "log_every_n_steps"):
        _positive(f"train.{key}", getattr(t, key))
    for key in ("weight_decay", "grad_clip", "val_every_n_steps", "ckpt_every_n_steps", "warmup_min_steps"):
        _positive(f"train.{key}", getattr(t, key), allow_zero=True)
    _positive("train.val_batches", t.val_batches)
    _one_of("train.flops_convention", t.flops_convention, CONVENTIONS)
    _one_of("train.lr_schedule", t.lr_schedule, LR_SCHEDULES)
    _one_of("train.strategy", t.strategy, STRATEGIES)
    _one_of("train.precision", t.precision, PRECISIONS)
    validate_strategy_config(t)  # fsdp: world size, precision, sharding (training/strategy.py)
    _one_of("attention.backend", cfg.attention.backend, BACKENDS)
    if cfg.attention.backend == "flash" and importlib.util.find_spec("flash_attn") is None:
        raise ConfigError(
            "attention.backend=flash needs the flash-attn package (pip install 'llada-lightning[flash]' "
            "on a CUDA machine); use attention.backend=sdpa"
        )
    for key in ("min_lr_ratio", "warmup_fraction", "decay_fraction", "beta1", "beta2"):
        value = getattr(t, key)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"train.{key}={value} must lie in [0, 1]")
    if (t.max_steps is None) == (t.flops_budget is None):
        raise ConfigError(
            "set exactly one of train.max_steps and train.flops_budget "
            f"(now max_steps={t.max_steps}, flops_budget={t.flops_budget}); override the other with null"
        )
    _positive("train.max_steps", t.max_steps)
    _positive("train.flops_budget", t.flops_budget)
    _positive("train.peak_flops", t.peak_flops)
    if t.flops_budget is not None:
        steps = total_steps(cfg)
        if steps < 1:
            one = flops_per_token(cfg.model, cfg.data.seq_len, t.flops_convention) * tokens_per_step(cfg)
            raise ConfigError(
                f"train.flops_budget={t.flops_budget:.3g} is smaller than one step ({one:.3g} FLOPs, "
                f"convention {t.flops_convention}); raise the budget or lower train.batch_size / data.seq_len"
            )


def validate(cfg: RunConfig) -> None:
    """Raise `ConfigError` on the first inconsistency; cheap (no data, no model)."""
    _validate_objective(cfg)
    _validate_model(cfg)
    _validate_train(cfg)
    _validate_data(cfg)
    if cfg.sft.parent is not None:
        from llada_lightning.sft.validation import validate_sft

        validate_sft(cfg)
