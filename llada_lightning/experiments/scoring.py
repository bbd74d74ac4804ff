"""Ask a trained run every question of a fact set and score its greedy answers by exact match of the entity.

Forward: "The partner of A is" -> B; reverse: "The partner of B is" -> A (Berglund et al. 2023, Exp. 1). Every
prompt starts with the document separator (EOS), as every training document does; the answer is the text
generated before the first "." (generation stops at EOS), stripped. Exact match is the headline (Berglund Exp. 1,
SMDM Sec. 7.1: "exact match accuracy"); `contains` is SMDM evaluate_reverse.py's looser metric (the reference is a
substring of the lower-cased generation), kept beside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llada_lightning.experiments.facts import FactSet, prompt

if TYPE_CHECKING:
    from llada_lightning.inference.loading import LoadedRun

# (subset, direction): which pairs, and whether the question names B and asks for A.
QUERIES = (("test", "forward"), ("test", "reverse"), ("both", "forward"), ("both", "reverse"))


def answer_of(generated: str) -> str:
    """The entity a generation names: its text before the first ".", stripped of whitespace."""
    return generated.split(".", 1)[0].strip()


def exact_match(generated: str, expected: str) -> bool:
    """Whether the generation's entity is exactly `expected` (case and spelling included)."""
    return answer_of(generated) == expected


def contains(generated: str, expected: str) -> bool:
    """SMDM's looser criterion (evaluate_reverse.py: `reference in generation`, both lower-cased and stripped)."""
    return expected.strip().lower() in generated.strip().lower()


def questions(facts: FactSet, subset: str, direction: str) -> list[tuple[str, str]]:
    """(name in the prompt, expected answer) for every pair of `subset` in `direction`."""
    pairs = facts.test if subset == "test" else facts.both
    return [(a, b) if direction == "forward" else (b, a) for a, b in pairs]


@dataclass(frozen=True)
class Settings:
    """Greedy decoding (temperature 0, no guidance, as LLaDA Sec. 3.3 reports its reversal table without CFG)."""

    gen_length: int  # tokens after the prompt: the longest name, its ".", and EOS
    remasking: str = "low_confidence"  # LLaDA's default sampler (Nie et al. 2025, Sec. 2.4)

    def as_dict(self) -> dict[str, Any]:
        return {
            "gen_length": self.gen_length,
            "steps": self.gen_length,
            "block_length": self.gen_length,
            "remasking": self.remasking,
            "temperature": 0.0,
            "cfg_scale": 0.0,
        }


def generation_length(loaded: LoadedRun, names: Iterable[str]) -> int:
    """The longest " name" in tokens, plus one for "." and one for EOS."""
    return max(len(loaded.encode(f" {n}")) for n in names) + 2


def ask(loaded: LoadedRun, name: str, settings: Settings) -> str:
    """The run's greedy completion of `prompt(name)` (LLaDA: one token per step, one block: pure diffusion
    sampling with low-confidence remasking, Nie et al. 2025 Sec. 2.4 / App. B.4; ARM: greedy left to right)."""
    from llada_lightning.inference.generation import generate_ids

    ids = [loaded.eos_id, *loaded.encode(prompt(name))]
    out = generate_ids(
        loaded,
        ids,
        gen_length=settings.gen_length,
        steps=settings.gen_length,
        block_length=settings.gen_length,
        temperature=0.0,
        remasking=settings.remasking,
        seed=0,
    )
    return loaded.decode(out)


def evaluate(loaded: LoadedRun, facts: FactSet) -> dict[str, Any]:
    """Every query of QUERIES: per-question records and per-(subset, direction) accuracies."""
    settings = Settings(generation_length(loaded, [n for pair in (*facts.test, *facts.both) for n in pair]))
    records: list[dict[str, Any]] = []
    for subset, direction in QUERIES:
        for name, expected in questions(facts, subset, direction):
            generated = ask(loaded, name, settings)
            records.append(
                {
                    "subset": subset,
                    "direction": direction,
                    "prompt": prompt(name),
                    "expected": expected,
                    "generated": generated,
                    "exact": exact_match(generated, expected),
                    "contains": contains(generated, expected),
                }
            )
    return {"settings": settings.as_dict(), "accuracy": accuracies(records), "records": records}


def accuracies(records: list[dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    """{"test/forward": {"exact", "contains", "correct", "n"}, ...} from per-question records."""
    out: dict[str, dict[str, float | int]] = {}
    for subset, direction in QUERIES:
        rows = [r for r in records if r["subset"] == subset and r["direction"] == direction]
        if rows:
            correct = sum(bool(r["exact"]) for r in rows)
            out[f"{subset}/{direction}"] = {
                "exact": correct / len(rows),
                "contains": sum(bool(r["contains"]) for r in rows) / len(rows),
                "correct": correct,
                "n": len(rows),
            }
    return out


ANSWER_KINDS = ("correct", "echo", "other forward-only A", "forward-only B", "both-way name", "none of the set")


def answer_kinds(records: list[dict[str, Any]], subset: str = "test", direction: str = "reverse") -> dict[str, int]:
    """What the answers to one query type are: right, the prompt's own name echoed, another name of the right role
    (an A of the forward-only pairs), a B of those pairs, a name of the both-way pairs, or none of the set (an
    invented name or other text)."""
    a_names = {r["expected"] for r in records if r["subset"] == "test" and r["direction"] == "reverse"}
    b_names = {r["expected"] for r in records if r["subset"] == "test" and r["direction"] == "forward"}
    both = {r["expected"] for r in records if r["subset"] == "both"}
    counts = dict.fromkeys(ANSWER_KINDS, 0)
    for r in records:
        if (r["subset"], r["direction"]) != (subset, direction):
            continue
        answer, asked = answer_of(r["generated"]), r["prompt"].split()[3]  # "The partner of NAME is"
        kind = (
            "correct" if answer == r["expected"]
            else "echo" if answer == asked
            else "other forward-only A" if answer in a_names
            else "forward-only B" if answer in b_names
            else "both-way name" if answer in both
            else "none of the set"
        )  # fmt: skip
        counts[kind] += 1
    return counts
