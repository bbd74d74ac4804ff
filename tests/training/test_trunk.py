"""WSD shared trunks at the training level: a branch off the trunk equals an independent WSD run, bitwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llada_lightning.config.compose import compose
from llada_lightning.training import trunk
from llada_lightning.training.lr_schedule import branch_step, lr_multiplier
from llada_lightning.training.run import train

TINY = [
    "objective=llada",
    "model=cpu-0.1m",
    "data.seq_len=32",
    "train.batch_size=4",
    "train.accumulate_grad_batches=2",
    "objective.random_length_prob=0.2",
    "train.lr_schedule=wsd",
    "train.warmup_fraction=0",
    "train.warmup_min_steps=2",
    "train.val_every_n_steps=0",
    "train.val_batches=1",
    "train.progress_bar=false",
]
BUDGETS = (6, 10)  # branch steps 5 and 8
# differ between any two runs (paths, timings) or exist only on a branch (its compute accounting)
NOT_COMPARED = {"run_dir", "wall_time_s", "segment_wall_time_s", "signature", "flops_spent", "flops_independent"}


def _ckpt(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def test_branch_step_is_where_the_wsd_decay_starts() -> None:
    for total in (2, 6, 10, 37):
        s = branch_step(total, 0.2)
        kw = {"total_steps": total, "warmup": 0, "schedule": "wsd", "min_ratio": 0.1, "decay_fraction": 0.2}
        assert all(lr_multiplier(t, **kw) == 1.0 for t in range(s + 1))
        assert lr_multiplier(s + 1, **kw) < 1.0 or s + 1 == total


def test_branches_off_a_trunk_equal_independent_wsd_runs_bitwise(tmp_path: Path) -> None:
    steps = {T: branch_step(T, 0.2) for T in BUDGETS}
    trunk_dir = tmp_path / "trunk"
    trunk.write_trunk_record(trunk_dir, list(steps.values()))
    trunk_cfg = compose(
        [*TINY, "train.lr_schedule=constant", f"train.max_steps={max(steps.values())}", f"run_dir={trunk_dir}"]
    )
    assert train(trunk_cfg)["status"] == "done"
    for s in steps.values():
        assert trunk.branch_checkpoint(trunk_dir, s).is_file()

    for total, s in steps.items():
        independent, branch = tmp_path / f"independent-{total}", tmp_path / f"branch-{total}"
        train(compose([*TINY, f"train.max_steps={total}", f"run_dir={independent}"]))
        trunk.write_branch_record(branch, trunk_dir, s, list(steps.values()))
        got = train(compose([*TINY, f"train.max_steps={total}", f"run_dir={branch}"]))
        a, b = _ckpt(independent), _ckpt(branch)
        assert b["global_step"] == a["global_step"] == total
        for name in a["state_dict"]:
            assert torch.equal(a["state_dict"][name], b["state_dict"][name]), name
        for sa, sb in zip(
            a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values(), strict=True
        ):
            assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert a["optimizer_states"][0]["param_groups"][0]["lr"] == b["optimizer_states"][0]["param_groups"][0]["lr"]
        ra = json.loads((independent / "result.json").read_text())
        rb = json.loads((branch / "result.json").read_text())
        assert {k: v for k, v in ra.items() if k not in NOT_COMPARED} == {
            k: v for k, v in rb.items() if k not in NOT_COMPARED
        }
        assert dict(got)["val_loss"] == ra["val_loss"]
        assert rb["flops_independent"] == ra["flops_6N"]
        assert 0 < rb["flops_spent"] < rb["flops_independent"]


def test_branch_flops_split_the_trunk_among_its_branches() -> None:
    steps = [5, 8, 8]  # three budgets, two of them branching at the same step
    flops_at = float  # one FLOP per step
    spent = [trunk.branch_flops({"step": s, "branch_steps": steps}, flops_at, s + 2) for s in steps]
    assert spent[0] == {"flops_spent": pytest.approx(5 / 3 + 2), "flops_independent": 7.0}
    assert spent[1]["flops_spent"] == pytest.approx(5 / 3 + 3 / 2 + 2)
    trunk_total, branch_total = 8.0, 3 * 2.0
    assert sum(s["flops_spent"] for s in spent) == pytest.approx(trunk_total + branch_total)


def test_branch_without_its_trunk_checkpoint_is_one_line(tmp_path: Path) -> None:
    trunk.write_branch_record(tmp_path / "b", tmp_path / "no-trunk", 5, [5])
    with pytest.raises(Exception, match="does not exist"):
        train(compose([*TINY, "train.max_steps=6", f"run_dir={tmp_path / 'b'}"]))
