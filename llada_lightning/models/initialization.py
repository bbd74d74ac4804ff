"""Weight initialisation schemes of the reference codebases, chosen by `model.init`.

Every scheme draws each weight matrix from a zero-mean normal (truncated for `llada`) whose std depends on
the matrix's role; RMSNorm weights start at 1 and there are no biases. Roles in this backbone:
`embed`, per layer `attn.wq|wk|wv|wo` and `ffn.w1|w3|w2` (gate, up, down), `head` (absent when tied).

- `gpt2` (default): normal(0, init_std), the residual projections wo and w2 at init_std / sqrt(2 n_layers)
  (GPT-2, Radford et al. 2019 Sec. 2.3; nanoGPT model.py `_init_weights`; Megatron-LM `scaled_init_method_normal`).
- `smdm`: SMDM (Nie et al. 2024) lit_gpt/diffmodel.py and lit_gpt/model.py `_init_weights`: every nn.Embedding and
  nn.Linear normal(0, sqrt(2 / (5 d))) (GPT-NeoX's "small init"), then the attention `proj` and the SwiGLU `w3`
  (down projection) re-drawn at 1 / (sqrt(d) n_layers).
- `llada`: OLMo's "mitchell" init, the `init_fn` of LLaDA-8B's released config.json (`init_std` 0.02 and
  `init_cutoff_factor` null are unused by it): OLMo olmo/model.py `OLMo.reset_parameters`,
  `OLMoBlock.reset_parameters`, `OLMoLlamaBlock.reset_parameters` with olmo/initialization.py `init_normal`
  (LLaDA's remote code modeling_llada.py `init_weights` gives the same numbers). Normal truncated at +-3 sigma.
"""

from __future__ import annotations

import math

from torch import nn

from llada_lightning.config.schema import ModelConfig
from llada_lightning.models.layers import RMSNorm

INIT_SCHEMES = ("gpt2", "smdm", "llada")
RESIDUAL_PROJECTIONS = ("wo", "w2")  # outputs written into the residual stream (scaled init)
MITCHELL_CUTOFF = 3.0  # OLMo: `init_cutoff_factor or 3.0` for "mitchell"; LLaDA-8B sets init_cutoff_factor null


def check_init(scheme: str) -> str:
    """Validate an init scheme name (ValueError naming the valid ones)."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme model.init={scheme!r}; valid schemes: {', '.join(INIT_SCHEMES)}")
    return scheme


def weight_std(config: ModelConfig, name: str, fan_in: int) -> tuple[float, float | None]:
    """(sigma, truncation in units of sigma or None) for the weight of the module `name` with `fan_in` inputs.

    `name` is the module's qualified name in `Transformer` ("embed", "layers.3.attn.wo", "head", ...).
    """
    scheme = check_init(config.init)
    role = name.rsplit(".", 1)[-1]
    d, n_layers = config.d_model, config.n_layers
    if scheme == "gpt2":
        if role in RESIDUAL_PROJECTIONS:
            return config.init_std / math.sqrt(2 * n_layers), None  # GPT-2 Sec. 2.3: 1/sqrt(N), N = 2 n_layers
        return config.init_std, None
    if scheme == "smdm":
        if role in RESIDUAL_PROJECTIONS:
            return 1.0 / math.sqrt(d) / n_layers, None  # SMDM `_init_weights`: 1 / sqrt(n_embd) / n_layer
        return math.sqrt(2.0 / 5.0 / d), None  # SMDM `_init_weights`: sqrt(2 / 5 / n_embd), GPT-NeoX small init
    # llada: OLMo "mitchell"
    if role == "wo":
        layer = int(name.split(".")[1])
        return 1.0 / math.sqrt(2 * d * (layer + 1)), MITCHELL_CUTOFF  # OLMoBlock: attn_out, 1/sqrt(2 d (l+1))
    if role == "w2":
        layer = int(name.split(".")[1])
        # OLMoBlock: ff_out, 1 / sqrt(2 ff_out.in_features (l+1)), l the 0-based layer index
        return 1.0 / math.sqrt(2 * fan_in * (layer + 1)), MITCHELL_CUTOFF
    # OLMo: wte, q/k/v and ff_proj (LLaDA: ff_proj and up_proj) and the output head ff_out: 1 / sqrt(d_model)
    return 1.0 / math.sqrt(d), MITCHELL_CUTOFF


def init_weights(model: nn.Module, config: ModelConfig) -> None:
    """Initialise `model` (a `Transformer`) in place with the scheme `config.init`.

    Modules are visited in `named_modules()` order, one draw per weight, so the weights are a function of
    torch's global seed only (and `gpt2` draws exactly as this project always has).
    """
    check_init(config.init)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            fan_in = module.in_features if isinstance(module, nn.Linear) else module.embedding_dim
            std, cutoff = weight_std(config, name, fan_in)
            if cutoff is None:
                nn.init.normal_(module.weight, mean=0.0, std=std)
            else:  # olmo/initialization.py `init_normal`: trunc_normal_ at +-cutoff * std
                nn.init.trunc_normal_(module.weight, mean=0.0, std=std, a=-cutoff * std, b=cutoff * std)
        elif isinstance(module, RMSNorm):
            module.reset_parameters()
