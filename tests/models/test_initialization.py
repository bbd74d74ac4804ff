"""`model.init`: each scheme's per-weight std against its reference's definition, written out here.

The expected stds below are typed from the reference code, not taken from llada_lightning:
- SMDM lit_gpt/diffmodel.py (and lit_gpt/model.py) `_init_weights`: every nn.Embedding and nn.Linear
  normal(0, sqrt(2 / 5 / n_embd)); then the attention `proj` and the xformers SwiGLU `w3` (its down projection)
  normal(0, 1 / sqrt(n_embd) / n_layer). Our names: attention out `wo`, SwiGLU down `w2` (our `w3` is the up one).
- OLMo olmo/model.py, init_fn "mitchell" (LLaDA-8B config.json): `OLMo.reset_parameters` wte and the head ff_out
  1/sqrt(d_model); `OLMoLlamaBlock.reset_parameters` q/k/v/ff_proj 1/sqrt(d_model) (LLaDA also up_proj);
  `OLMoBlock.reset_parameters` attn_out 1/sqrt(2 d_model (layer_id + 1)), ff_out 1/sqrt(2 ff_out.in_features
  (layer_id + 1)); olmo/initialization.py `init_normal`: trunc_normal_ at +-3 std (init_cutoff_factor or 3.0).
- gpt2 (this project's scheme since the start; nanoGPT model.py): normal(0, init_std), wo and w2 at
  init_std / sqrt(2 n_layers).

Tolerances: the sample std of N i.i.d. draws has a relative standard error of about sqrt((kurtosis - 1) / (4N)),
i.e. 1/sqrt(2N) for a normal and less for a truncated one (kurtosis < 3); each check allows 5 of those, and the
mean 5 sigma/sqrt(N). Every weight tensor here has N >= 8192 elements (5 standard errors <= 3.9%).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import platform

import pytest
import torch
from torch import nn

from llada_lightning.config import ModelConfig
from llada_lightning.config.compose import compose
from llada_lightning.config.errors import ConfigError
from llada_lightning.config.ladder import load_model_config
from llada_lightning.models import build_model
from llada_lightning.models.initialization import weight_std
from llada_lightning.models.layers import RMSNorm

CFG = ModelConfig(n_layers=3, n_heads=4, n_kv_heads=2, d_model=128, d_ff=384, vocab_size=1000)
Z = 5.0  # standard errors allowed per check


def truncated_std_factor(c: float) -> float:
    """std of a standard normal truncated to [-c, c]: sqrt(1 - 2 c phi(c) / (2 Phi(c) - 1))."""
    phi = math.exp(-c * c / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(c / math.sqrt(2))  # 2 Phi(c) - 1
    return math.sqrt(1 - 2 * c * phi / mass)


def smdm_sigma(cfg: ModelConfig, name: str) -> float:
    d, n_layer = cfg.d_model, cfg.n_layers
    if name.endswith(("attn.wo.weight", "ffn.w2.weight")):  # SMDM attn `proj`, SwiGLU `w3`
        return 1 / math.sqrt(d) / n_layer
    return math.sqrt(2 / 5 / d)


def mitchell_sigma(cfg: ModelConfig, name: str) -> float:
    d = cfg.d_model
    if name.endswith("attn.wo.weight"):
        layer_id = int(name.split(".")[1])
        return 1 / math.sqrt(2 * d * (layer_id + 1))
    if name.endswith("ffn.w2.weight"):
        layer_id = int(name.split(".")[1])
        return 1 / math.sqrt(2 * cfg.d_ff * (layer_id + 1))  # ff_out.in_features = d_ff
    return 1 / math.sqrt(d)  # wte, q/k/v, gate (ff_proj), up (up_proj), head (ff_out)


def gpt2_sigma(cfg: ModelConfig, name: str) -> float:
    if name.endswith(("attn.wo.weight", "ffn.w2.weight")):
        return cfg.init_std / math.sqrt(2 * cfg.n_layers)
    return cfg.init_std


EXPECTED = {"gpt2": (gpt2_sigma, None), "smdm": (smdm_sigma, None), "llada": (mitchell_sigma, 3.0)}


def check_weight(name: str, w: torch.Tensor, sigma: float, cutoff: float | None) -> None:
    n = w.numel()
    std = sigma * (truncated_std_factor(cutoff) if cutoff is not None else 1.0)
    w = w.double()
    assert abs(w.mean().item()) < Z * std / math.sqrt(n), name
    assert w.std().item() == pytest.approx(std, rel=Z / math.sqrt(2 * n)), name
    if cutoff is not None:
        assert w.abs().max().item() <= cutoff * sigma * (1 + 1e-6), name  # truncated at cutoff sigma
        # and the bound binds: with n >= 8192 draws, some land within 0.2 sigma of it (P(miss) < 1e-20)
        assert w.abs().max().item() > (cutoff - 0.2) * sigma, name
    else:  # a normal of n >= 8192 draws exceeds 3 sigma somewhere (P(not) = 0.9973^n < 1e-9)
        assert w.abs().max().item() > 3 * sigma, name


@pytest.mark.parametrize("scheme", ["gpt2", "smdm", "llada"])
@pytest.mark.parametrize("tied", [False, True])
def test_each_weight_has_its_schemes_std(scheme: str, tied: bool) -> None:
    cfg = dataclasses.replace(CFG, init=scheme, tie_embeddings=tied)
    torch.manual_seed(0)
    model = build_model(cfg)
    sigma_of, cutoff = EXPECTED[scheme]
    seen = 0
    for name, p in model.named_parameters():
        if p.ndim == 1:
            assert torch.equal(p, torch.ones_like(p)), name  # RMSNorm weights start at 1 in every scheme
            continue
        check_weight(name, p.detach(), sigma_of(cfg, name), cutoff)
        seen += 1
    assert seen == 1 + 7 * cfg.n_layers + (0 if tied else 1)  # embed, 7 matrices per layer, head


def test_schemes_differ_where_their_formulas_do() -> None:
    """The three schemes really are different at this size (so the checks above can tell them apart)."""
    for a, b in (("gpt2", "smdm"), ("smdm", "llada"), ("gpt2", "llada")):
        differs = [
            name
            for name in ("embed.weight", "layers.0.attn.wo.weight", "layers.2.ffn.w2.weight")
            if abs(EXPECTED[a][0](CFG, name) / EXPECTED[b][0](CFG, name) - 1) > 0.1
        ]
        assert differs, (a, b)


def _materialised_init(cfg: ModelConfig, names: list[str]) -> dict[str, torch.Tensor]:
    """Init a big model with only the named weights on the CPU (the rest stays on the meta device)."""
    model = build_model(cfg, device="meta")
    modules = dict(model.named_modules())
    for name in names:
        modules[name.removesuffix(".weight")].to_empty(device="cpu")
    torch.manual_seed(0)
    model.init_weights()
    params = dict(model.named_parameters())
    return {name: params[name].detach() for name in names}


def test_smdm_1476m_init_equals_smdm_formula() -> None:
    cfg = load_model_config("smdm-1476m")
    assert cfg.init == "smdm" and (cfg.n_layers, cfg.d_model) == (22, 2048)
    # every weight of the full-size model: the std the init uses (on the meta device, nothing allocated)
    meta = build_model(cfg, device="meta")
    for name, module in meta.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            fan_in = module.in_features if isinstance(module, nn.Linear) else module.embedding_dim
            assert weight_std(cfg, name, fan_in) == pytest.approx((smdm_sigma(cfg, f"{name}.weight"), None)), name
    assert smdm_sigma(cfg, "layers.0.attn.wo.weight") == pytest.approx(1 / (math.sqrt(2048) * 22))  # ~1.0e-3
    # and the draws themselves, for a sample of full-size weights (first and last layer, the embedding)
    names = ["embed.weight", "layers.0.attn.wq.weight", "layers.0.attn.wo.weight", "layers.21.ffn.w2.weight"]
    for name, w in _materialised_init(cfg, names).items():
        check_weight(name, w, smdm_sigma(cfg, name), None)


def test_llada_8b_init_equals_olmo_mitchell() -> None:
    cfg = load_model_config("llada-8b")
    assert cfg.init == "llada" and (cfg.n_layers, cfg.d_model, cfg.d_ff) == (32, 4096, 12288)
    names = [
        "layers.0.attn.wk.weight",
        "layers.0.attn.wo.weight",
        "layers.31.attn.wo.weight",
        "layers.31.ffn.w2.weight",
    ]
    weights = _materialised_init(cfg, names)
    for name, w in weights.items():
        check_weight(name, w, mitchell_sigma(cfg, name), 3.0)
    # the depth scaling of the outputs: layer 31 draws sqrt(32) times narrower than layer 0
    ratio = weights["layers.0.attn.wo.weight"].std() / weights["layers.31.attn.wo.weight"].std()
    assert ratio.item() == pytest.approx(math.sqrt(32), rel=0.01)


def test_ladder_configs_name_their_reference_scheme() -> None:
    assert load_model_config("llada-8b").init == "llada"
    assert all(load_model_config(n).init == "smdm" for n in ("smdm-6m", "smdm-113m", "smdm-1476m", "smdm-2121m"))
    assert all(load_model_config(n).init == "gpt2" for n in ("cpu-0.1m", "cpu-1m", "cpu-10m"))  # unchanged default


def legacy_init(cfg: ModelConfig, seed: int) -> nn.Module:
    """The initialisation before `model.init` existed, restated: named_modules order, one normal_ per weight."""
    model = build_model(cfg, device="meta").to_empty(device="cpu")
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                residual = name.rsplit(".", 1)[-1] in ("wo", "w2")
                std = cfg.init_std / math.sqrt(2 * cfg.n_layers) if residual else cfg.init_std
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
    return model


@pytest.mark.parametrize(
    "cfg",
    [CFG, dataclasses.replace(CFG, tie_embeddings=True, mask_token_id=5), load_model_config("cpu-0.4m")],
    ids=["gqa", "tied", "cpu-0.4m"],
)
def test_default_init_is_bit_identical_to_before(cfg: ModelConfig) -> None:
    assert cfg.init == "gpt2"
    reference = legacy_init(cfg, seed=7)
    torch.manual_seed(7)
    model = build_model(cfg)
    for (name, a), b in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b), name


def _digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


# torch's CPU normal_ has vectorised code paths: its bits are only guaranteed on the kind of machine they came from
@pytest.mark.skipif(
    not (torch.__version__.startswith("2.13.") and platform.machine() == "x86_64"),
    reason="checksums recorded with torch 2.13 on x86_64",
)
def test_default_init_checksums_recorded_before_the_init_option() -> None:
    small = ModelConfig(n_layers=2, n_heads=4, n_kv_heads=4, d_model=32, d_ff=80, vocab_size=50)
    torch.manual_seed(0)
    assert _digest(build_model(small)) == "696646de4859a4ae354ced0a820aec699d25966d631d36c0cff2cdd3fbe7a5dc"
    torch.manual_seed(0)
    assert _digest(build_model(compose(["model=cpu-0.1m"]))) == (
        "c7891bde6df4573b954a9bad349f47209f06c4a9b564979e66bc11fd88a61ac0"
    )


def test_unknown_scheme_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model.init='xavier'.*one of: gpt2, smdm, llada") as info:
        compose(["model.init=xavier"])
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="model.init='xavier'"):
        build_model(dataclasses.replace(CFG, init="xavier"), device="meta")
