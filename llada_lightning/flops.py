"""Parameter and FLOP accounting (Kaplan et al. 2020; Hoffmann et al. 2022 App. F): plain Python, no torch.

Two conventions, always named next to any number they produce:
- "6N": training FLOPs per token = 6 * N, N = non-embedding parameters, no attention term
  (Kaplan et al. 2020; SMDM's C = 6ND for both ARM and MDM).
- "full": every matmul, the output head and dense attention scores/values, causal sparsity not
  subtracted (Chinchilla App. F, PaLM, torchtitan); training = 3 x forward.
The embedding lookup costs 0 in both; norms, softmax and activations are not counted.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llada_lightning.config.schema import ModelConfig, RunConfig

CONVENTIONS = ("6N", "full")


def matmul_params(cfg: ModelConfig) -> int:
    """Non-embedding parameters that are matmul weights: attention q, k, v, o and SwiGLU w1, w3, w2."""
    d, q, kv = cfg.d_model, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    attention = d * q + 2 * d * kv + q * d  # wq, wk, wv (GQA: n_kv_heads), wo
    ffn = 3 * d * cfg.d_ff  # SwiGLU has 3 matrices
    return cfg.n_layers * (attention + ffn)


def param_counts(cfg: ModelConfig) -> tuple[int, int]:
    """(non_embedding, total), exact for `models.build_model(cfg)`.

    Non-embedding = all but the input embedding and output head, norms included (SMDM sizes:
    `n_layer * (16 d^2 + 2 d) + d`, SMDM). Total counts a tied head once.
    """
    d = cfg.d_model
    norms = 2 * d * cfg.n_layers + d  # two RMSNorms per block plus the final one
    non_embedding = matmul_params(cfg) + norms
    embedding = cfg.embedding_rows * d
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * d
    return non_embedding, non_embedding + embedding + head


def forward_flops_terms(cfg: ModelConfig, convention: str) -> tuple[int, int]:
    """(a, b): forward FLOPs of one token attending over a context of L tokens are `a + b * L` (exact ints)."""
    if convention == "6N":
        return 2 * param_counts(cfg)[0], 0  # Kaplan et al. 2020: 2N per token forward, N non-embedding
    if convention == "full":
        per_token = (
            2 * matmul_params(cfg)  # one multiply-add per matmul weight (Chinchilla App. F)
            + 2 * cfg.d_model * cfg.vocab_size  # output head; the embedding lookup costs 0
        )
        per_context = 4 * cfg.n_layers * cfg.n_heads * cfg.head_dim  # QK^T and AV, dense (PaLM, torchtitan)
        return per_token, per_context
    raise ValueError(f"unknown FLOP convention {convention!r}; valid: {', '.join(map(repr, CONVENTIONS))}")


def flops_per_token(cfg: ModelConfig, seq_len: int, convention: str = "full", training: bool = True) -> float:
    """FLOPs per token for a context of `seq_len`; training = forward + backward (3 x forward)."""
    a, b = forward_flops_terms(cfg, convention)
    forward = a + b * seq_len
    return float(3 * forward if training else forward)  # backward = 2 x forward (Kaplan; Chinchilla)


def training_flops(cfg: ModelConfig, tokens: int, token_context: int, convention: str) -> float:
    """Training FLOPs of sequences of any lengths L_s: sum_s L_s * flops_per_token(L_s), computed exactly.

    `tokens` = sum_s L_s and `token_context` = sum_s L_s^2 (each token times the context it attends over), so
    sequences of mixed lengths (LLaDA's random-length steps) are counted with their own attention cost.
    """
    a, b = forward_flops_terms(cfg, convention)
    return float(3 * (a * tokens + b * token_context))  # backward = 2 x forward (Kaplan; Chinchilla)


def tokens_for_budget(flops_budget: float, cfg: ModelConfig, seq_len: int, convention: str) -> float:
    """Training tokens D that spend `flops_budget` (D = C / (6N) for "6N")."""
    return flops_budget / flops_per_token(cfg, seq_len, convention, training=True)


def steps_for_budget(flops_budget: float, cfg: ModelConfig, seq_len: int, tokens_per_step: int, convention: str) -> int:
    """Optimizer steps that fit in `flops_budget` (floored; callers raise if < 1)."""
    return math.floor(flops_budget / (flops_per_token(cfg, seq_len, convention, training=True) * tokens_per_step))


def mfu(flops: float, seconds: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: model FLOPs done per second over the hardware's peak FLOP/s (Chowdhery et al. 2022,
    PaLM App. B). `flops` in the "full" convention (every matmul, the head, dense attention; recomputation of
    checkpointed activations not counted), `peak_flops` the peak of all the devices that did them."""
    return flops / seconds / peak_flops


def tokens_per_step(cfg: RunConfig) -> int:
    """Tokens consumed by one optimizer step across all devices (every sequence counted at full length)."""
    t = cfg.train
    return t.batch_size * t.accumulate_grad_batches * t.devices * t.num_nodes * cfg.data.seq_len


def total_steps(cfg: RunConfig) -> int:
    """Optimizer steps of the run: `train.max_steps`, or the steps that spend `train.flops_budget`."""
    t = cfg.train
    if t.max_steps is not None:
        return t.max_steps
    if t.flops_budget is None:
        raise ValueError("set one of train.max_steps and train.flops_budget")
    return steps_for_budget(t.flops_budget, cfg.model, cfg.data.seq_len, tokens_per_step(cfg), t.flops_convention)
