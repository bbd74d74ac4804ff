"""Fixed-length blocks of a token stream and the sampler that orders them, resumable from a sample count.

The training order is a pure function of (seed, global sample index g): sample g belongs to data epoch
`e = g // n_blocks` and reads block `perm_e[g % n_blocks]`, with `perm_e` a permutation fixed by
`[seed, e]`. Resuming therefore needs only the number of samples consumed so far (derived from the
optimizer step), and data-constrained studies may repeat epochs, each in a fresh order.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class BlockDataset(Dataset):
    """Non-overlapping blocks `tokens[i*seq_len:(i+1)*seq_len]` as LongTensors; the tail is dropped."""

    def __init__(self, tokens: np.ndarray, seq_len: int):
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.tokens = tokens
        self.seq_len = int(seq_len)
        self.n_blocks = len(tokens) // self.seq_len

    def __len__(self) -> int:
        return self.n_blocks

    def __getitem__(self, i: int) -> torch.Tensor:
        if i < 0:
            i += self.n_blocks
        if not 0 <= i < self.n_blocks:
            raise IndexError(f"block {i} out of range ({self.n_blocks} blocks)")
        start = i * self.seq_len
        return torch.from_numpy(np.asarray(self.tokens[start : start + self.seq_len], dtype=np.int64))

    # A memmap pickles as a full copy of its data; spawned DataLoader workers reopen the file instead.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        t = self.tokens
        if isinstance(t, np.memmap) and isinstance(t.base, mmap.mmap) and t.filename:
            state["tokens"] = ("memmap", t.filename, t.dtype.str, t.offset, t.shape)
        return state

    def __setstate__(self, state: dict) -> None:
        t = state["tokens"]
        if isinstance(t, tuple) and t and t[0] == "memmap":
            _, filename, dtype, offset, shape = t
            state["tokens"] = np.memmap(filename, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape)
        self.__dict__.update(state)


# The entropy tag of the unique-token subset's stream, apart from every epoch order's ([seed, epoch]).
_SUBSET_TAG = 0x756E69717565  # "unique"


def unique_subset(n_blocks: int, n_unique: int, seed: int) -> np.ndarray:
    """The blocks of a data-constrained run: the first `n_unique` of a permutation of all `n_blocks` fixed by
    `seed` alone, so runs of one seed share them and a smaller subset is a prefix of a larger one."""
    if not 1 <= n_unique <= n_blocks:
        raise ValueError(f"n_unique must lie in [1, {n_blocks}], got {n_unique}")
    return np.random.default_rng([_SUBSET_TAG, seed]).permutation(n_blocks)[:n_unique]


def epochs_seen(samples_consumed: int, n_blocks: int) -> float:
    """Data epochs covered by `samples_consumed` blocks (fractional; > 1 once data repeats)."""
    return samples_consumed / n_blocks


class ResumableBlockSampler(Sampler[int]):
    """An infinite stream of block indices for one rank, starting at global sample `start()`.

    `start` is evaluated when iteration begins (after a checkpoint restore) and returns the number of
    samples the whole job has consumed. Micro-batch m of the job covers global samples
    [m*B*W, (m+1)*B*W); rank r takes [m*B*W + r*B, m*B*W + (r+1)*B), B = batch_size, W = world_size.
    The DataLoader must batch with the same `batch_size` and must not shuffle.
    """

    def __init__(
        self,
        n_blocks: int,
        *,
        seed: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        start: Callable[[], int] | int = 0,
    ):
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sharding: batch_size={batch_size}, rank={rank}, world_size={world_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.n_blocks = int(n_blocks)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.start = start

    def permutation(self, epoch: int) -> np.ndarray:
        """The block order of data epoch `epoch`."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_blocks)

    def epoch_of(self, g: int) -> int:
        """The data epoch of global sample `g`."""
        return g // self.n_blocks

    def epochs_seen(self, samples_consumed: int) -> float:
        return epochs_seen(samples_consumed, self.n_blocks)

    def global_indices(self, start: int) -> Iterator[int]:
        """This rank's global sample indices >= `start`, in order."""
        b, bw = self.batch_size, self.batch_size * self.world_size
        m = start // bw
        while True:
            lo = m * bw + self.rank * b
            yield from range(max(lo, start), lo + b)
            m += 1

    def __iter__(self) -> Iterator[int]:
        start = self.start() if callable(self.start) else self.start
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        epoch, perm = -1, None
        for g in self.global_indices(int(start)):
            e = g // self.n_blocks
            if e != epoch:
                epoch, perm = e, self.permutation(e)
            yield int(perm[g % self.n_blocks])


# ---- weighted mixtures of several prepared sets (data.paths with data.weights) ---------------------------------

MIXTURE_PERIOD = 10_000  # weights are resolved to multiples of 1 / MIXTURE_PERIOD


class Mixture:
    """Which set each global sample draws from: a fixed pattern of MIXTURE_PERIOD slots, repeated.

    Set k has `counts[k]` slots per period (period x its weight, rounded by largest remainder, at least one), in the
    order of their due times (i + 1/2) / counts[k] (smooth weighted round-robin, ties to the lower k), so every window
    of samples holds each set in proportion. Sample g is then sample j = (g // P) counts[k] + (slots of k before g % P)
    of set k's own stream: a pure function of g, as the single-set order is, so resume and rank sharding carry over.
    """

    def __init__(self, weights: list[float], period: int = MIXTURE_PERIOD):
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or len(w) < 1 or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(f"mixture weights must be positive and finite, got {weights}")
        if len(w) > period:
            raise ValueError(f"at most {period} sets in a mixture, got {len(w)}")
        exact = w / w.sum() * period
        counts = np.maximum(np.floor(exact).astype(np.int64), 1)
        while counts.sum() < period:  # largest remainder first
            counts[int(np.argmax(exact - counts))] += 1
        while counts.sum() > period:  # only when the floor of one at least took slots: from the largest
            counts[int(np.argmax(np.where(counts > 1, counts - exact, -np.inf)))] -= 1
        self.period = int(period)
        self.counts = counts
        due = np.concatenate([(np.arange(c) + 0.5) / c for c in counts])
        sets = np.repeat(np.arange(len(counts)), counts)
        self.pattern = sets[np.argsort(due, kind="stable")]
        before = np.zeros((period + 1, len(counts)), dtype=np.int64)  # before[r, k]: slots of k in pattern[:r]
        np.add.at(before, (np.arange(1, period + 1), self.pattern), 1)
        self.before = np.cumsum(before, axis=0)

    @property
    def shares(self) -> np.ndarray:
        """The resolved weights: each set's fraction of the samples."""
        return self.counts / self.period

    def locate(self, g: int) -> tuple[int, int]:
        """(set k, index j in set k's stream) of global sample g."""
        r = g % self.period
        k = int(self.pattern[r])
        return k, (g // self.period) * int(self.counts[k]) + int(self.before[r, k])

    def interleave(self, sizes: list[int], n: int) -> list[tuple[int, int]]:
        """The first samples (k, j), j < sizes[k], in the mixture's order: at most n, ending where a set runs out."""
        out: list[tuple[int, int]] = []
        for g in range(n):
            k, j = self.locate(g)
            if j >= sizes[k]:
                break
            out.append((k, j))
        return out


class MixtureBlockSampler(ResumableBlockSampler):
    """ResumableBlockSampler over the concatenated blocks of several sets, drawn by a Mixture.

    Global sample g reads block perm_{k,e}[j % n_k] of set k, (k, j) = mixture.locate(g), e = j // n_k, with
    perm_{k,e} fixed by [seed, e, k]: each set is read in epochs of its own, each in a fresh order. The indices are
    into the concatenation of the sets (set k's blocks start at sum(sizes[:k])). Ranks and resume: as the base class.
    """

    def __init__(self, sizes: list[int], mixture: Mixture, **kwargs):
        if len(sizes) != len(mixture.counts) or min(sizes) < 1:
            raise ValueError(f"one positive block count per mixture set, got {sizes}")
        super().__init__(int(sum(sizes)), **kwargs)
        self.sizes = [int(s) for s in sizes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.mixture = mixture

    def set_permutation(self, k: int, epoch: int) -> np.ndarray:
        """The block order of set k's data epoch `epoch`."""
        return np.random.default_rng([self.seed, epoch, k]).permutation(self.sizes[k])

    def __iter__(self) -> Iterator[int]:
        start = self.start() if callable(self.start) else self.start
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        perms: dict[int, tuple[int, np.ndarray]] = {}
        for g in self.global_indices(int(start)):
            k, j = self.mixture.locate(g)
            n = self.sizes[k]
            e = j // n
            if k not in perms or perms[k][0] != e:
                perms[k] = (e, self.set_permutation(k, e))
            yield int(self.offsets[k] + perms[k][1][j % n])
