"""The model ladder: a registry whose derived fields follow the family rules and whose names match the counts."""

from __future__ import annotations

import pytest

from llada_lightning.config.compose import compose
from llada_lightning.config.errors import ConfigError
from llada_lightning.config.ladder import LADDER, ladder, load_model_config
from llada_lightning.flops import param_counts


def test_smdm_sizes_follow_smdms_parameter_formula() -> None:
    smdm = ladder("smdm-")
    assert len(smdm) == 29  # SMDM's scaling ladder, 6M .. 2121M (names vs counts: tests/test_flops.py)
    for m in smdm.values():
        # SMDM sizes: n_layer * (16 d^2 + 2 d) + d non-embedding parameters (SwiGLU 4d, no GQA)
        assert param_counts(m)[0] == m.n_layers * (16 * m.d_model**2 + 2 * m.d_model) + m.d_model


def test_derived_fields_follow_the_family() -> None:
    for name, m in LADDER.items():
        assert m.n_kv_heads == m.n_heads, name
        if not name.startswith("llada-"):
            assert m.d_ff == 4 * m.d_model, name
    assert {m.init for n, m in LADDER.items() if n.startswith("smdm-")} == {"smdm"}
    llada = load_model_config("llada-8b")
    assert (llada.d_ff, llada.mask_token_id, llada.init, llada.vocab_size) == (12288, 126336, "llada", 126464)
    assert param_counts(llada)[0] == 6_979_588_096  # LLaDA 8B's non-embedding parameters (Nie et al. 2025, Table 5)


def test_sizes_are_addressable_as_model_name_and_ordered_by_size() -> None:
    assert compose(["model=smdm-113m"], check=False).model == LADDER["smdm-113m"]
    counts = [param_counts(m)[0] for m in ladder().values()]
    assert counts == sorted(counts)
    cfg = load_model_config("cpu-1m")
    cfg.n_layers = 99  # callers get a copy: the registry stays as it is
    assert LADDER["cpu-1m"].n_layers == 4


def test_unknown_size_lists_the_ladder() -> None:
    with pytest.raises(ConfigError, match="model=cpu-99m: no such model size; choose one of: cpu-0.1m"):
        compose(["model=cpu-99m"])
    with pytest.raises(KeyError, match="unknown model size"):
        load_model_config("gpt-5")
