"""Config composition: groups, overrides, and one clear error per malformed config."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llada_lightning.cli import main
from llada_lightning.config.compose import compose, load_run_config, to_yaml
from llada_lightning.config.errors import ConfigError
from llada_lightning.config.signature import config_diff, signature
from llada_lightning.models import build_model


def test_defaults_and_group_choice() -> None:
    cfg = compose()
    assert cfg.model.name == "cpu-1m" and cfg.objective.name == "llada" and cfg.data.source == "embedded"
    assert build_model(cfg, device="meta").causal is False
    arm = compose(["objective=arm", "model=cpu-0.1m", "train.lr=0.01"])
    # ARM = same backbone, causal mask: the objective names its attention, the model config does not
    assert arm.objective.name == "arm" and build_model(arm, device="meta").causal is True
    assert not hasattr(arm.model, "causal")
    assert arm.model.n_layers == 2 and arm.train.lr == 0.01


def test_dotlist_overrides_types() -> None:
    cfg = compose(["model.n_layers=3", "train.max_steps=7", "data.seq_len=64", "train.flops_budget=null"])
    assert cfg.model.n_layers == 3 and cfg.train.max_steps == 7 and cfg.data.seq_len == 64


def test_budget_replaces_steps() -> None:
    cfg = compose(["train.max_steps=null", "train.flops_budget=1e13"])
    from llada_lightning.flops import flops_per_token, tokens_per_step, total_steps

    per_step = flops_per_token(cfg.model, cfg.data.seq_len, "6N") * tokens_per_step(cfg)
    assert total_steps(cfg) == int(1e13 // per_step) >= 1


def test_yaml_roundtrip_and_signature(tmp_path) -> None:
    cfg = compose(["model=cpu-0.4m", "train.lr=0.002"])
    path = tmp_path / "run.yaml"
    path.write_text(to_yaml(cfg))
    again = compose([str(path)])
    assert signature(again) == signature(cfg) and config_diff(again, cfg) == []
    # keys that cannot change the result do not change the signature; a learning rate does
    assert signature(compose(["model=cpu-0.4m", "train.lr=0.002", "train.log_every_n_steps=3"])) == signature(cfg)
    assert signature(compose(["model=cpu-0.4m", "train.lr=0.003"])) != signature(cfg)


MALFORMED = [
    (["train.not_a_key=1"], "train.not_a_key"),
    (["bogus=3"], "bogus"),
    (["train.lr=fast"], "train.lr"),
    (["model.n_layers=2.5"], "model.n_layers"),
    (["model.d_model=100", "model.n_heads=3"], "model.d_model"),
    (["model.n_heads=4", "model.n_kv_heads=3"], "model.n_kv_heads"),
    (["data.seq_len=1024"], "data.seq_len"),
    (["data.vocab_size=8192"], "model.vocab_size"),
    (["train.max_steps=null", "train.flops_budget=1e3"], "train.flops_budget"),
    (["train.flops_budget=1e15"], "train.max_steps"),
    (["model=cpu-99m"], "model=cpu-99m"),
    (["objective.schedule=quadratic"], "objective.schedule"),
    (["objective.name=gpt"], "objective.name"),
    (
        ["train.flops_convention=kaplan", "train.max_steps=null", "train.flops_budget=1e15"],
        "train.flops_convention",
    ),
    (["attention.backend=xformers"], "attention.backend"),
    (["attention.backend=flash"], "attention.backend=flash"),
    (["objective.eps=0"], "objective.eps"),
    (["data.tokenizer=/nonexistent/tokenizer.json"], "data.tokenizer"),
    (["model.causal=true"], "model.causal"),
    (["train.batch_size=0"], "train.batch_size"),
    (["data.val_fraction=1.5"], "data.val_fraction"),
    (["just-a-word"], "key=value"),
]


@pytest.mark.parametrize(("overrides", "names"), MALFORMED, ids=[" ".join(o) for o, _ in MALFORMED])
def test_malformed_config_one_clear_line(overrides: list[str], names: str, capsys) -> None:
    with pytest.raises(ConfigError) as info:
        compose(overrides)
    message = str(info.value)
    assert "\n" not in message and names in message
    assert main(["config", *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("llada: config error:") and names in err[0]


def test_cli_exit_code_in_a_real_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "llada_lightning.cli", "train", "model.d_model=100", "model.n_heads=3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("llada: config error: model.d_model=100")


# Signatures of two runs as written before `model.causal` became derived (commit cf5d458): the run
# directories of existing sweeps must keep their names, or relaunching would redo them.
LEGACY_SIGNATURES = {"llada": "f6868102f8", "arm": "4827fce8ad"}


def test_signature_unchanged_by_the_derived_attention() -> None:
    assert signature(compose(["model=cpu-0.1m"])) == LEGACY_SIGNATURES["llada"]
    assert signature(compose(["model=cpu-0.1m", "objective=arm"])) == LEGACY_SIGNATURES["arm"]


def test_a_key_added_later_keeps_old_signatures_until_it_is_set() -> None:
    # data.unique_tokens came after these runs were stored: at its default (None) their names stay
    assert signature(compose(["model=cpu-0.1m", "data.unique_tokens=null"])) == LEGACY_SIGNATURES["llada"]
    constrained = compose(["model=cpu-0.1m", "data.unique_tokens=65536"])
    assert signature(constrained) != LEGACY_SIGNATURES["llada"]
    assert config_diff(constrained, compose(["model=cpu-0.1m"])) == ["data.unique_tokens (65536 != None)"]


def test_legacy_run_config_with_model_causal_still_loads(tmp_path) -> None:
    cfg = compose(["model=cpu-0.1m", "objective=arm"])
    legacy = to_yaml(cfg).replace("  max_seq_len:", "  causal: true\n  max_seq_len:", 1)
    assert "causal: true" in legacy
    path = tmp_path / "config.yaml"
    path.write_text(legacy)
    loaded = load_run_config(path)
    assert config_diff(loaded, cfg) == [] and signature(loaded) == LEGACY_SIGNATURES["arm"]
    with pytest.raises(ConfigError, match="model.causal is not a setting.*objective.name"):
        compose([str(path)])  # as an explicit config file it is refused, naming the key
