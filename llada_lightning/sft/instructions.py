"""A small instruction set generated here (never downloaded): for tests, the demo and quick SFT studies.

Short tasks a tiny model can learn in minutes (copy, reverse, capitalise, count letters, add small numbers, a
two-turn recall dialogue), over words drawn from the embedded corpus, so the pre-trained tokenizer knows them.
The same `n` always gives the same conversations.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from llada_lightning.sft.chat import Message

_SEED = 20250213


@lru_cache(maxsize=1)
def _words() -> tuple[str, ...]:
    """Lower-case words of 3 to 8 letters from the embedded corpus's first works, sorted (deterministic)."""
    from llada_lightning.data.corpus import iter_embedded_works

    seen: set[str] = set()
    for i, (_, text) in enumerate(iter_embedded_works()):
        seen.update(re.findall(r"\b[a-z]{3,8}\b", text))
        if i >= 3:
            break
    return tuple(sorted(seen))


def _turn(user: str, assistant: str) -> list[Message]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _one(kind: int, rng: np.random.Generator, words: tuple[str, ...]) -> list[Message]:
    w = words[int(rng.integers(len(words)))]
    if kind == 0:
        return _turn(f"Repeat the word {w}.", w)
    if kind == 1:
        return _turn(f"Reverse the word {w}.", w[::-1])
    if kind == 2:
        return _turn(f"Write {w} in capitals.", w.upper())
    if kind == 3:
        return _turn(f"How many letters are in {w}?", str(len(w)))
    if kind == 4:
        a, b = (int(x) for x in rng.integers(0, 50, size=2))
        return _turn(f"What is {a} plus {b}?", str(a + b))
    v = words[int(rng.integers(len(words)))]
    return [
        *_turn(f"Remember the word {w}.", f"I will remember {w}."),
        *_turn(f"Which word did I ask you to remember? Also say {v}.", f"{w} and {v}"),
    ]


def instruction_set(n: int) -> list[list[Message]]:
    """`n` conversations, the six task kinds in turn (the last a two-turn dialogue)."""
    rng = np.random.default_rng(_SEED)
    words = _words()
    return [_one(i % 6, rng, words) for i in range(n)]
