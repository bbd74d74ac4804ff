"""Blocks and the resumable sampler: fixed order, exact resume, whole epochs, rank sharding."""

from __future__ import annotations

import pickle
from itertools import islice

import numpy as np
import pytest
import torch

from llada_lightning.data.blocks import BlockDataset, ResumableBlockSampler, epochs_seen


def take(sampler, n: int) -> list[int]:
    return list(islice(iter(sampler), n))


def test_block_dataset_cuts_non_overlapping_blocks():
    tokens = np.arange(103, dtype=np.uint16)
    ds = BlockDataset(tokens, 10)
    assert len(ds) == 10
    x = ds[3]
    assert x.dtype == torch.long and x.shape == (10,)
    assert x.tolist() == list(range(30, 40))
    assert ds[-1].tolist() == list(range(90, 100))
    with pytest.raises(IndexError):
        ds[10]
    assert len(BlockDataset(tokens[:9], 10)) == 0


def test_block_dataset_pickles_a_memmap_by_reference(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(100_000, dtype=np.uint32).tofile(path)
    mm = np.memmap(path, dtype=np.uint32, mode="r", shape=(100_000,))
    blob = pickle.dumps(BlockDataset(mm, 64))
    assert len(blob) < 2_000  # not the 400 kB of data
    ds = pickle.loads(blob)
    assert isinstance(ds.tokens, np.memmap)
    assert ds[5].tolist() == list(range(320, 384))


def test_order_is_fixed_by_the_seed():
    a = take(ResumableBlockSampler(50, seed=1, batch_size=4), 120)
    assert a == take(ResumableBlockSampler(50, seed=1, batch_size=4), 120)
    assert a != take(ResumableBlockSampler(50, seed=2, batch_size=4), 120)
    assert a[:50] != list(range(50))


def test_every_block_appears_once_per_epoch_in_a_fresh_order():
    n = 37
    s = ResumableBlockSampler(n, seed=0, batch_size=5)
    stream = take(s, 4 * n)
    epochs = [stream[e * n : (e + 1) * n] for e in range(4)]
    for e, chunk in enumerate(epochs):
        assert sorted(chunk) == list(range(n))
        assert chunk == s.permutation(e).tolist()
    assert epochs[0] != epochs[1]
    assert [s.epoch_of(g) for g in (0, n - 1, n, 3 * n + 2)] == [0, 0, 1, 3]
    assert s.epochs_seen(74) == epochs_seen(74, n) == 2.0


@pytest.mark.parametrize("k", [0, 1, 7, 36, 37, 100])
def test_resuming_at_k_yields_the_tail_of_the_uninterrupted_stream(k):
    full = take(ResumableBlockSampler(37, seed=3, batch_size=4), 200)
    assert take(ResumableBlockSampler(37, seed=3, batch_size=4, start=k), 200 - k) == full[k:]


def test_start_is_read_when_iteration_begins():
    consumed = {"n": 0}
    s = ResumableBlockSampler(20, seed=0, batch_size=2, start=lambda: consumed["n"])
    full = take(s, 30)
    consumed["n"] = 12  # e.g. restored from a checkpoint after the sampler was built
    assert take(s, 18) == full[12:]


@pytest.mark.parametrize("start_batches", [0, 3])
def test_ranks_shard_the_single_rank_stream_without_overlap(start_batches):
    n_blocks, b, w, m = 29, 3, 4, 10  # m micro-batches per rank
    start = start_batches * b * w
    single = take(ResumableBlockSampler(n_blocks, seed=5, batch_size=b * w, start=start), m * b * w)
    ranks = [
        take(ResumableBlockSampler(n_blocks, seed=5, batch_size=b, rank=r, world_size=w, start=start), m * b)
        for r in range(w)
    ]
    for i in range(m):  # micro-batch i of the job: rank 0's batch, then rank 1's, ...
        job_batch = [x for r in range(w) for x in ranks[r][i * b : (i + 1) * b]]
        assert job_batch == single[i * b * w : (i + 1) * b * w]
    # Global sample indices: disjoint across ranks, together exactly the job's range.
    gs = [list(islice(ResumableBlockSampler(n_blocks, seed=5, batch_size=b, rank=r, world_size=w)
                      .global_indices(start), m * b)) for r in range(w)]  # fmt: skip
    flat = sorted(g for r in gs for g in r)
    assert flat == list(range(start, start + m * b * w))


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError):
        ResumableBlockSampler(0, seed=0, batch_size=1)
    with pytest.raises(ValueError):
        ResumableBlockSampler(5, seed=0, batch_size=1, rank=2, world_size=2)
