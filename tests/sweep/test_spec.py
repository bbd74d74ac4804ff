"""Sweep specs: deterministic expansion, stable signatures, readable names, budget axes, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from llada_lightning.config.errors import ConfigError
from llada_lightning.flops import flops_per_token
from llada_lightning.sweep.spec import expand, load_spec


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


SPEC = """
name: s
root: {root}
base: [data.seq_len=32, train.batch_size=4, train.max_steps=null]
grid:
  objective: [llada, arm]
  train.flops_budget: [1e12, 4e12]
  model: [cpu-0.1m, cpu-0.4m]
zip:
  - {{train.lr: [0.003, 0.001], train.seed: [0, 1]}}
"""


def test_cartesian_times_zip_is_deterministic(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, SPEC.format(root=tmp_path)))
    runs = expand(spec)
    assert len(runs) == 2 * 2 * 2 * 2
    again = expand(load_spec(_write(tmp_path, SPEC.format(root=tmp_path))))
    assert [r.signature for r in runs] == [r.signature for r in again]
    assert len({r.signature for r in runs}) == len(runs)
    # zipped keys move together: lr 0.003 always with seed 0
    assert {(r.cfg.train.lr, r.cfg.train.seed) for r in runs} == {(0.003, 0), (0.001, 1)}
    assert runs[0].name == "llada-c0.1m-1e12-lr3e-3-seed0"
    assert all(r.run_dir == spec.directory / r.signature for r in runs)


def test_budget_axis_derives_steps_and_tokens_from_c_and_n(tmp_path: Path) -> None:
    runs = expand(load_spec(_write(tmp_path, SPEC.format(root=tmp_path))))
    for run in runs:
        c = run.cfg.train.flops_budget
        per_token = flops_per_token(run.cfg.model, 32, "6N")  # C = 6 N D with N non-embedding
        assert run.steps == int(c // (per_token * 4 * 32))
        assert run.tokens == run.steps * 4 * 32 <= c / per_token
    small = [r for r in runs if r.cfg.model.name == "cpu-0.1m" and r.cfg.train.flops_budget == 4e12]
    large = [r for r in runs if r.cfg.model.name == "cpu-0.4m" and r.cfg.train.flops_budget == 4e12]
    assert small[0].tokens > large[0].tokens  # same compute: the smaller model sees more tokens


def test_signature_ignores_non_result_keys(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, SPEC.format(root=tmp_path)))
    base = [r.signature for r in expand(spec)]
    assert [r.signature for r in expand(spec, ["train.log_every_n_steps=7", "data.num_workers=1"])] == base
    assert [r.signature for r in expand(spec, ["train.weight_decay=0.0"])] != base


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\ngrid: {model: []}\n", "non-empty list"),
        ("grid: {model: [cpu-0.1m]}\n", "needs a name"),
        ("name: x\nzip: [{train.lr: [1, 2], train.seed: [1]}]\n", "equal length"),
        ("name: x\ngrdi: {}\n", "unknown key"),
        ("name: x\ngrid: {model: [cpu-0.1m, cpu-0.1m]}\nbase: [train.max_steps=3]\n", "same config"),
        ("name: x\ngrid: {model: [cpu-77m]}\n", "model=cpu-77m"),
    ],
)
def test_bad_specs_fail_clearly(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        expand(load_spec(_write(tmp_path, text)))
