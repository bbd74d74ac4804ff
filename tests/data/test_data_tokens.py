"""data.source=tokens: prepared sets read by the data module: ranks, mixtures, resume, config checks, `llada train`."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from prepared_helpers import documents, write_jsonl

from llada_lightning.config.compose import compose
from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import DataConfig
from llada_lightning.config.signature import result_dict
from llada_lightning.data import prepare
from llada_lightning.data.blocks import Mixture
from llada_lightning.data.cache import file_sha256
from llada_lightning.data.datamodule import LMDataModule
from llada_lightning.data.prepare import PrepareOptions

SEQ = 16


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[str, str]:
    """Two prepared sets of different documents and one tokenizer (the second prepared with the first's file)."""
    root = tmp_path_factory.mktemp("tokens")
    docs = documents()
    a = write_jsonl(root / "a.jsonl", docs[:60])
    b = write_jsonl(root / "b.jsonl", docs[60:])
    quiet = {"echo": lambda line: None}
    prepare.prepare(PrepareOptions([str(a)], str(root / "A"), vocab_size=300, shard_bytes=8192), **quiet)
    prepare.prepare(PrepareOptions([str(b)], str(root / "B"), tokenizer=str(root / "A" / "tokenizer.json"),
                                   shard_bytes=8192), **quiet)  # fmt: skip
    return str(root / "A"), str(root / "B")


def make_dm(paths: list[str], weights=None, **kw) -> LMDataModule:
    cfg = DataConfig(source="tokens", paths=paths, weights=weights, seq_len=SEQ, unique_tokens=kw.pop("unique", None))
    dm = LMDataModule(cfg, **({"batch_size": 4, "seed": 0, "val_batches": 3} | kw))
    dm.prepare_data()
    dm.setup("fit")
    return dm


def indices(dm: LMDataModule, n: int, rank: int = 0, world: int = 1, step: int = 0) -> list[int]:
    """The first n block indices a rank's training loader reads (after `step` optimizer steps)."""
    dm.trainer = SimpleNamespace(global_rank=rank, world_size=world, global_step=step)
    it = iter(dm.train_dataloader().sampler)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("mixed", [False, True], ids=["one set", "mixture"])
def test_ranks_read_disjoint_slices_that_together_are_the_stream(sets, mixed):
    dm = make_dm(list(sets) if mixed else [sets[0]], batch_size=3)
    single = make_dm(list(sets) if mixed else [sets[0]], batch_size=6)
    n = dm.train_blocks // 12 * 6  # half an epoch per rank: no block may repeat across ranks
    r0, r1 = indices(dm, n, 0, 2), indices(dm, n, 1, 2)
    assert not set(r0) & set(r1) and len(set(r0)) == len(r0)
    both = [x for m in range(n // 3) for x in r0[3 * m : 3 * m + 3] + r1[3 * m : 3 * m + 3]]
    assert both == indices(single, 2 * n)  # micro-batch m is rank 0's 3 blocks then rank 1's
    if not mixed:  # one epoch over both ranks covers every block exactly once
        e = dm.train_blocks // 6 * 3
        assert sorted(indices(dm, e, 0, 2) + indices(dm, e, 1, 2)) == sorted(indices(single, 2 * e))
        full = indices(dm, dm.train_blocks)
        assert sorted(full) == list(range(dm.train_blocks))


@pytest.mark.parametrize("mixed", [False, True], ids=["one set", "mixture"])
def test_resume_from_a_step_reads_the_batches_of_an_uninterrupted_run(sets, mixed):
    paths = list(sets) if mixed else [sets[0]]
    dm = make_dm(paths, accumulate_grad_batches=2)
    dm.trainer = SimpleNamespace(global_rank=0, world_size=1, global_step=0)
    it = iter(dm.train_dataloader())
    fresh = torch.cat([next(it) for _ in range(10)])
    dm.trainer = SimpleNamespace(global_rank=0, world_size=1, global_step=3)  # 3 steps x 2 micro-batches x 4
    it = iter(dm.train_dataloader())
    assert torch.equal(torch.cat([next(it) for _ in range(4)]), fresh[24:40])
    for rank in (0, 1):  # two ranks resumed at step 1 (2 micro-batches of 4 each): their own slices go on
        ranked = indices(dm, 12, rank, 2, step=0)
        assert indices(dm, 4, rank, 2, step=1) == ranked[8:]


def test_mixture_weights_are_the_empirical_proportions_and_each_set_runs_in_epochs(sets):
    dm = make_dm(list(sets), weights=[3.0, 1.0])
    n0, n1 = dm.set_blocks
    got = np.asarray(indices(dm, 8000))
    from_b = got >= n0
    assert abs(from_b.mean() - 0.25) < 1e-3
    for lo, hi in ((0, 2000), (4000, 4400)):  # every window holds the sets in proportion (smooth round robin)
        assert abs(from_b[lo:hi].mean() - 0.25) < 0.01
    b = got[from_b] - n0
    for e in range(len(b) // n1):  # set B: each of its epochs reads its blocks once, each epoch in a new order
        assert sorted(b[e * n1 : (e + 1) * n1]) == list(range(n1))
    assert not np.array_equal(b[:n1], b[n1 : 2 * n1])
    default = make_dm(list(sets))  # no weights: by training blocks, as a concatenation would
    assert np.allclose(default.mixture.shares, [n0 / (n0 + n1), n1 / (n0 + n1)], atol=1e-4)


def test_mixture_validation_interleaves_the_sets_first_blocks(sets):
    a, b, mixed = make_dm([sets[0]]), make_dm([sets[1]]), make_dm(list(sets), weights=[1, 1], val_batches=2)
    blocks = torch.cat(list(mixed.val_dataloader()))
    va, vb = torch.cat(list(a.val_dataloader())), torch.cat(list(b.val_dataloader()))
    assert len(blocks) == 8
    assert torch.equal(blocks[0::2], va[:4]) and torch.equal(blocks[1::2], vb[:4])
    expected = (a.bytes_per_token("val") + b.bytes_per_token("val")) / 2
    assert mixed.bytes_per_token("val") == pytest.approx(expected)


def test_prepared_streams_pickle_without_their_maps(sets):
    dm = make_dm([sets[0]])
    dataset = dm.train_dataset
    first = dataset[0]
    copy = pickle.loads(pickle.dumps(dataset))
    assert len(pickle.dumps(dataset)) < 100_000 and copy.tokens._maps == {}
    assert torch.equal(copy[0], first) and torch.equal(copy[len(copy) - 1], dataset[len(dataset) - 1])


def test_unique_tokens_takes_a_subset_of_one_prepared_set(sets):
    dm = make_dm([sets[0]], unique=10 * SEQ)
    assert dm.train_blocks == 10 and dm.unique_tokens == 10 * SEQ
    assert sorted(indices(dm, 10)) == sorted(indices(dm, 20)[10:])  # every epoch: the same 10 blocks


def _errors(sets: tuple[str, str], tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "plan.json").write_text("{}")
    base = ["data.source=tokens", "data.seq_len=16"]
    a, b = sets
    return {
        "no paths": (base, "data.source=tokens needs data.paths"),
        "weights": ([*base, f"data.paths=[{a},{b}]", "data.weights=[1.0]"], "data.weights has 1 entries for 2"),
        "negative": ([*base, f"data.paths=[{a},{b}]", "data.weights=[1.0,-1.0]"], "must all be positive"),
        "unfinished": ([*base, f"data.paths=[{tmp_path / 'unfinished'}]"], "finish it: rerun"),
        "missing": ([*base, f"data.paths=[{tmp_path / 'none'}]"], "no readable manifest.json"),
        "vocab": ([*base, f"data.paths=[{a}]", "model.vocab_size=256"], "model.vocab_size=256 is smaller than"),
        "unique": ([*base, f"data.paths=[{a},{b}]", "data.unique_tokens=1024"], "data.unique_tokens takes one"),
        "tokenizer": ([*base, f"data.paths=[{a}]", f"data.tokenizer={a}/tokenizer.json"], "data.tokenizer is not read"),
        "paths": ([f"data.paths=[{a}]"], "data.paths and data.weights are read with data.source=tokens only"),
    }


@pytest.mark.parametrize(
    "case", ["no paths", "weights", "negative", "unfinished", "missing", "vocab", "unique", "tokenizer", "paths"]
)
def test_prepared_data_is_checked_with_the_config(case, sets, tmp_path):
    overrides, message = _errors(sets, tmp_path)[case]
    with pytest.raises(ConfigError, match=message):
        compose(["model=cpu-0.1m", *overrides])


def test_a_mixture_needs_one_tokenizer(sets, tmp_path):
    other = tmp_path / "C"
    opts = PrepareOptions([str(Path(sets[0]).parent / "a.jsonl")], str(other), vocab_size=260, shard_bytes=8192)
    prepare.prepare(opts, echo=lambda line: None)
    with pytest.raises(ConfigError, match=r"data.paths\[1\]=.* another tokenizer than data.paths\[0\]"):
        make_dm([sets[0], str(other)])


def test_new_keys_at_their_default_keep_run_signatures():
    tree = result_dict(compose(["model=cpu-0.1m"]))
    assert "paths" not in tree["data"] and "weights" not in tree["data"]


def test_llada_train_on_a_prepared_mixture(sets, tmp_path, capsys):
    from llada_lightning.cli import main

    torch.set_num_threads(1)
    run = tmp_path / "run"
    argv = ["train", "model=cpu-0.1m", "data.source=tokens", f"data.paths=[{sets[0]},{sets[1]}]",
            "data.weights=[0.7,0.3]", "data.seq_len=32", "train.batch_size=4", "train.max_steps=3",
            "train.val_batches=1", "train.progress_bar=false", f"run_dir={run}"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "done" and result["steps"] == 3 and result["tokens"] == 3 * 4 * 32
    assert result["val_loss"] > 0 and result["val_bpb"] > 0
    assert file_sha256(run / "tokenizer.json") == file_sha256(Path(sets[0]) / "tokenizer.json")
    assert "data.paths" not in capsys.readouterr().err
    assert Mixture([0.7, 0.3]).counts.tolist() == [7000, 3000]
