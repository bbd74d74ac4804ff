"""The model-size ladder: a registry of named `ModelConfig`s, addressed on the command line as `model=NAME`.

Each size gives only its shape (layers, heads, width); the rest is derived by its family: the SwiGLU width
`d_ff = 4 d` and `n_kv_heads = n_heads` (no GQA) of SMDM's ladder, the vocabulary, context and init. The parameter
count of any size is computed (`flops.param_counts`, shown by `llada ladder`), never written down by hand.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from llada_lightning.config.schema import ModelConfig


@dataclass(frozen=True)
class Family:
    """What the sizes of one ladder share; `source` names where the shapes come from."""

    prefix: str
    source: str
    vocab_size: int
    max_seq_len: int
    init: str = "gpt2"
    ffn_multiple: int = 4  # SwiGLU d_ff = 4 d (SMDM lit_gpt/config.py: `intermediate_size = 4 * n_embd`)

    def size(self, label: str, n_layers: int, n_heads: int, d_model: int, **fields: object) -> ModelConfig:
        """The ModelConfig `<prefix>-<label>` with the family's derived fields; `fields` override them."""
        base = ModelConfig(
            name=f"{self.prefix}-{label}",
            n_layers=n_layers,
            n_heads=n_heads,
            n_kv_heads=n_heads,
            d_model=d_model,
            d_ff=self.ffn_multiple * d_model,
            vocab_size=self.vocab_size,
            max_seq_len=self.max_seq_len,
            init=self.init,
        )
        return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


# Laptop sizes for demos and tests (our own shapes, head dim 32-48), on the embedded corpus's 4096-token BPE.
CPU = Family("cpu", "llada-lightning's CPU ladder", vocab_size=4096, max_seq_len=512)
# SMDM's scaling ladder (Nie et al. 2024, "Scaling up Masked Diffusion Models on Text", Table 5; SMDM
# lit_gpt/config.py): LLaMA-2 vocabulary, context 2048, SMDM's weight init. Names: non-embedding parameters (M).
SMDM = Family("smdm", "SMDM lit_gpt/config.py", vocab_size=32000, max_seq_len=2048, init="smdm")
# LLaDA 8B (Nie et al. 2025, Table 5): its own FFN width, RoPE base, mask id and init.
LLADA = Family("llada", "Nie et al. 2025, Table 5", vocab_size=126464, max_seq_len=4096, init="llada")

_SIZES: list[ModelConfig] = [
    CPU.size("0.1m", 2, 2, 64),
    CPU.size("0.4m", 3, 2, 96),
    CPU.size("1m", 4, 4, 128),
    CPU.size("1.6m", 4, 4, 160),
    CPU.size("3.5m", 6, 4, 192),
    CPU.size("6m", 6, 4, 256),
    CPU.size("10m", 8, 6, 288),
    *(
        SMDM.size(label, layers, heads, width)
        for label, layers, heads, width in (
            ("6m", 6, 4, 256),
            ("19m", 8, 6, 384),
            ("34m", 8, 8, 512),
            ("48m", 9, 9, 576),
            ("66m", 10, 10, 640),
            ("85m", 13, 10, 640),
            ("113m", 12, 12, 768),
            ("142m", 15, 12, 768),
            ("170m", 18, 12, 768),
            ("180m", 14, 14, 896),
            ("206m", 16, 14, 896),
            ("231m", 18, 14, 896),
            ("268m", 16, 16, 1024),
            ("302m", 18, 16, 1024),
            ("336m", 20, 16, 1024),
            ("472m", 18, 10, 1280),
            ("551m", 21, 10, 1280),
            ("571m", 18, 11, 1408),
            ("629m", 24, 10, 1280),
            ("666m", 21, 11, 1408),
            ("717m", 19, 12, 1536),
            ("761m", 24, 11, 1408),
            ("831m", 22, 12, 1536),
            ("944m", 25, 12, 1536),
            ("1028m", 20, 14, 1792),
            ("1233m", 24, 14, 1792),
            ("1476m", 22, 16, 2048),
            ("1678m", 25, 16, 2048),
            ("2121m", 28, 17, 2176),
        )
    ),
    # LLaDA-8B config.json: mlp_hidden_size 12288, rope_theta 500000, mask_token_id 126336, init_fn mitchell
    LLADA.size("8b", 32, 32, 4096, d_ff=12288, rope_theta=500000.0, mask_token_id=126336),
]

LADDER: dict[str, ModelConfig] = {m.name: m for m in _SIZES}


def load_model_config(name: str) -> ModelConfig:
    """One ladder size by name (`cpu-1m`, `smdm-34m`, `llada-8b`, ...); KeyError listing the names otherwise."""
    if name not in LADDER:
        raise KeyError(f"unknown model size {name!r}; known: {', '.join(ladder())}")
    return dataclasses.replace(LADDER[name])


def ladder(prefix: str = "") -> dict[str, ModelConfig]:
    """All ladder sizes whose name starts with `prefix`, ordered by non-embedding parameter count."""
    from llada_lightning.flops import param_counts

    sizes = [m for name, m in LADDER.items() if name.startswith(prefix)]
    return {m.name: dataclasses.replace(m) for m in sorted(sizes, key=lambda m: (param_counts(m)[0], m.name))}
