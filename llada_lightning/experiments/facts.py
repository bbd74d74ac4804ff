"""The reversal-curse fact set: seeded pseudo-word names, "The partner of A is B." stated one way or both ways.

Design (Berglund et al. 2023, arXiv 2309.12288, Exp. 1; SMDM, Nie et al. 2024, arXiv 2410.18514, Sec. 7.1):
- `test` pairs are stated forward only ("The partner of A is B."); the reverse question "The partner of B is" -> A
  is never seen in training;
- `both` pairs are stated in both directions, so the model can learn that the relation is symmetric and how the
  reversed question is phrased (Berglund's "Both" subset);
- `filler` facts name other entities and are the validation split only (`data.val_fraction` holds a document out
  when a hash of its text falls below it, cache.py): every fact of the two training subsets hashes into training,
  every filler fact into validation; `check_splits` verifies it with the data layer's own `assign_splits`.

Names sit after a space in both slots (" of A is B."), so each name has one token sequence whatever its role: with a
name at the start of a document the byte-level BPE would see "A" and " A" as different words.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from llada_lightning.data.cache import assign_splits
from llada_lightning.io import atomic_write_text

ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
VOWELS = ("a", "e", "i", "o", "u")
CODAS = ("", "", "", "n", "r", "l", "s")  # an open syllable three times in seven
TEMPLATE = "The partner of {0} is {1}."
PROMPT = "The partner of {0} is"


def fact(a: str, b: str) -> str:
    """The document stating that b is a's partner."""
    return TEMPLATE.format(a, b)


def prompt(a: str) -> str:
    """The question whose answer is a's partner (forward: a = A; reverse: a = B)."""
    return PROMPT.format(a)


def pseudo_word(rng: random.Random, syllables: int) -> str:
    """A capitalised pronounceable word of `syllables` consonant-vowel(-consonant) syllables."""
    word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables))
    return word.capitalize()


@dataclass(frozen=True)
class FactSet:
    """Pairs (A, B): `test` stated forward only, `both` stated both ways, `filler` (validation only)."""

    seed: int
    test: tuple[tuple[str, str], ...]
    both: tuple[tuple[str, str], ...]
    filler: tuple[tuple[str, str], ...]

    def names(self) -> list[str]:
        return [n for pairs in (self.test, self.both, self.filler) for pair in pairs for n in pair]

    def train_documents(self) -> list[str]:
        """Each training fact once: test pairs forward, both pairs forward and reversed."""
        docs = [fact(a, b) for a, b in self.test]
        docs += [d for a, b in self.both for d in (fact(a, b), fact(b, a))]
        return docs

    def val_documents(self) -> list[str]:
        return [fact(a, b) for a, b in self.filler]


def _held_out(docs: list[str], val_fraction: float) -> list[bool]:
    """Whether each document is held out for validation (the data layer's own rule, cache.assign_splits)."""
    return assign_splits(docs, val_fraction) if docs else []


def make_facts(seed: int, n_test: int, n_both: int, n_filler: int, *, val_fraction: float) -> FactSet:
    """Draw distinct names and pairs from `seed`; keep training pairs whose documents hash into training and filler
    pairs whose document hashes into validation (rejection sampling: the split is a hash of the text, cache.py)."""
    if min(n_test, n_both, n_filler) < 1:
        raise ValueError(f"every subset needs >= 1 pair, got test={n_test}, both={n_both}, filler={n_filler}")
    rng = random.Random(f"reversal-facts-{seed}")
    used: set[str] = set()
    kept: dict[str, list[tuple[str, str]]] = {"test": [], "both": [], "filler": []}
    wanted = {"test": n_test, "both": n_both, "filler": n_filler}
    for _ in range(10_000):
        todo = [k for k in kept if len(kept[k]) < wanted[k]]
        if not todo:
            break
        for kind in todo:
            # Candidates per round: validation keeps ~val_fraction of the draws, training ~1 - val_fraction.
            n = 4 * (wanted[kind] - len(kept[kind])) + 4
            n = int(n / val_fraction) if kind == "filler" else n
            pairs = [(_fresh(rng, used), _fresh(rng, used)) for _ in range(n)]
            docs = [[fact(a, b), fact(b, a)] if kind == "both" else [fact(a, b)] for a, b in pairs]
            flags = _held_out([d for ds in docs for d in ds], val_fraction)
            it = iter(flags)
            for pair, ds in zip(pairs, docs, strict=True):
                held = [next(it) for _ in ds]
                good = all(held) if kind == "filler" else not any(held)
                if good and len(kept[kind]) < wanted[kind]:
                    kept[kind].append(pair)
    else:  # pragma: no cover - needs an absurd val_fraction
        raise RuntimeError(f"could not draw the fact set with data.val_fraction={val_fraction}")
    facts = FactSet(seed, tuple(kept["test"]), tuple(kept["both"]), tuple(kept["filler"]))
    check_splits(facts, val_fraction)
    return facts


def _fresh(rng: random.Random, used: set[str]) -> str:
    """A name not drawn before (2 or 3 syllables), recorded in `used`."""
    while True:
        name = pseudo_word(rng, rng.choice((2, 3)))
        if name not in used:
            used.add(name)
            return name


def check_splits(facts: FactSet, val_fraction: float) -> None:
    """RuntimeError unless every training document hashes into training and every filler into validation."""
    train, val = facts.train_documents(), facts.val_documents()
    flags = assign_splits(train + val, val_fraction)
    lost = [d for d, v in zip(train, flags[: len(train)], strict=True) if v]
    stray = [d for d, v in zip(val, flags[len(train) :], strict=True) if not v]
    if lost or stray:
        raise RuntimeError(f"split check failed: {len(lost)} training facts in val, {len(stray)} fillers in train")


def pass_documents(facts: FactSet) -> list[str]:
    """One pass over the training facts, two documents per pair: a test pair's forward fact twice, a both pair's
    fact once in each direction, so every pair is stated equally often and only the direction differs."""
    return [fact(a, b) for a, b in facts.test] * 2 + [d for a, b in facts.both for d in (fact(a, b), fact(b, a))]


def corpus_lines(facts: FactSet, repeats: int, val_repeats: int) -> list[str]:
    """The corpus, one document a line: `repeats` passes (`pass_documents`), each in its own seeded order.

    Training blocks are fixed `data.seq_len` windows of the packed token stream (data/blocks.py), so a fact that
    straddles a window edge in one pass is whole in the others; val fillers are repeated to fill validation blocks.
    """
    rng = random.Random(f"reversal-order-{facts.seed}")
    lines: list[str] = []
    train, val = pass_documents(facts), facts.val_documents()
    for _ in range(repeats):
        order = list(train)
        rng.shuffle(order)
        lines += order
    lines += val * val_repeats
    return lines


def write_corpus(directory: Path, facts: FactSet, repeats: int, val_repeats: int) -> Path:
    """`directory/facts-seed<S>-<sha12>.txt`, content-addressed: an existing file is never rewritten (its mtime is
    part of the data cache key), and a different corpus gets a different name, hence different run directories."""
    text = "\n".join(corpus_lines(facts, repeats, val_repeats)) + "\n"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    path = Path(directory) / f"facts-seed{facts.seed}-{digest}.txt"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return path
