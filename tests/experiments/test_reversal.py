"""`llada experiment reversal`: the fact set, the scoring, the intervals, and the whole command end to end."""

from __future__ import annotations

import csv
import json
import math

import pytest

from llada_lightning.config.schema import DataConfig
from llada_lightning.data.cache import prepare_corpus
from llada_lightning.experiments.facts import (
    corpus_lines,
    fact,
    make_facts,
    pass_documents,
    prompt,
    write_corpus,
)
from llada_lightning.experiments.intervals import t_interval, wilson_interval
from llada_lightning.experiments.report import aggregate
from llada_lightning.experiments.scoring import accuracies, answer_kinds, answer_of, contains, exact_match, questions

VAL = 0.1


def facts(seed: int = 0, n: int = 12):
    return make_facts(seed, n, n, 5, val_fraction=VAL)


# ---- the fact set ---------------------------------------------------------------------------------------------


def test_facts_are_seeded_and_names_distinct():
    a, b, c = facts(3), facts(3), facts(4)
    assert a == b
    assert a.test != c.test
    assert (len(a.test), len(a.both), len(a.filler)) == (12, 12, 5)
    names = a.names()
    assert len(names) == len(set(names)) == 2 * (12 + 12 + 5)
    assert all(n.isalpha() and n[0].isupper() and n[1:].islower() for n in names)


def test_test_pairs_are_stated_forward_only_and_both_pairs_both_ways():
    f = facts()
    lines = corpus_lines(f, repeats=3, val_repeats=2)
    counts = {line: lines.count(line) for line in set(lines)}
    for a, b in f.test:
        assert counts.get(fact(a, b)) == 3 * 2  # twice per pass: as often as a both pair's two facts together
        assert fact(b, a) not in counts
        assert not any(line.startswith(prompt(b)) for line in lines)  # the reverse question never appears
    for a, b in f.both:
        assert counts.get(fact(a, b)) == counts.get(fact(b, a)) == 3
    assert len(pass_documents(f)) == 2 * (len(f.test) + len(f.both))
    passes = [lines[i * 48 : (i + 1) * 48] for i in range(3)]
    assert passes[0] != passes[1] and sorted(passes[0]) == sorted(passes[1])  # each pass in its own order


def test_no_training_fact_is_held_out_by_the_data_layer(tmp_path):
    """The real cache build (hash split, BPE) puts exactly the filler facts in validation."""
    f = facts(seed=1)
    path = write_corpus(tmp_path / "data", f, repeats=2, val_repeats=3)
    assert write_corpus(tmp_path / "data", f, repeats=2, val_repeats=3) == path  # content-addressed, reused
    mtime = path.stat().st_mtime_ns
    write_corpus(tmp_path / "data", f, repeats=2, val_repeats=3)
    assert path.stat().st_mtime_ns == mtime  # an existing corpus is not rewritten (its mtime keys the cache)
    cfg = DataConfig(
        source="hf", path="text", data_files=[str(path)], vocab_size=300, val_fraction=VAL, cache_dir=str(tmp_path)
    )
    corpus = prepare_corpus(cfg)
    val_text = corpus.tokenizer.decode(corpus.val.tolist(), skip_special_tokens=False)
    train_text = corpus.tokenizer.decode(corpus.train.tolist(), skip_special_tokens=False)
    assert corpus.meta["splits"]["val"]["n_docs"] == 3 * len(f.filler)
    for a, b in (*f.test, *f.both):
        assert fact(a, b) in train_text
        assert a not in val_text and b not in val_text
    for a, b in f.filler:
        assert fact(a, b) in val_text and a not in train_text


# ---- scoring --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generated", "exact", "loose"),
    [
        (" Babi.", True, True),
        (" Babi", True, True),  # no period: the whole generation is the answer
        (" Babi. The partner of", True, True),
        (" is Babi.", False, True),  # SMDM's `reference in generation` accepts it, exact match does not
        (" babi.", False, True),
        (" Babikan.", False, True),
        (" Bab.", False, False),
        ("", False, False),
    ],
)
def test_exact_match_and_contains(generated, exact, loose):
    assert exact_match(generated, "Babi") is exact
    assert contains(generated, "Babi") is loose


def test_answer_and_accuracies_on_hand_built_records():
    assert answer_of("  Zodoha .x") == "Zodoha"
    records = [
        {"subset": "test", "direction": "forward", "exact": True, "contains": True},
        {"subset": "test", "direction": "forward", "exact": False, "contains": True},
        {"subset": "test", "direction": "reverse", "exact": False, "contains": False},
    ]
    acc = accuracies(records)
    assert acc["test/forward"] == {"exact": 0.5, "contains": 1.0, "correct": 1, "n": 2}
    assert acc["test/reverse"]["exact"] == 0.0 and "both/forward" not in acc


def test_questions_swap_the_pair_for_the_reverse_direction():
    f = facts()
    assert questions(f, "test", "forward")[0] == f.test[0]
    assert questions(f, "test", "reverse")[0] == (f.test[0][1], f.test[0][0])
    assert prompt("Babi") == "The partner of Babi is"


# ---- intervals ------------------------------------------------------------------------------------------------


def test_t_interval_on_known_numbers():
    iv = t_interval([0.5, 0.6, 0.7])  # sd 0.1, t(0.975, 2) = 4.302653
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert iv.mean == pytest.approx(0.6)
    assert (iv.lo, iv.hi) == (pytest.approx(0.6 - half), pytest.approx(0.6 + half))
    clipped = t_interval([0.0, 0.0, 0.3])  # mean 0.1, half-width 0.43: clipped at 0
    assert clipped.lo == 0.0 and clipped.hi == pytest.approx(0.1 + 4.302652729911275 * math.sqrt(0.03) / math.sqrt(3))
    assert t_interval([0.4]).lo is None and t_interval([0.4]).mean == 0.4
    same = t_interval([0.2, 0.2])
    assert same.lo == same.hi == pytest.approx(0.2)


def test_wilson_interval_on_known_numbers():
    z2 = 1.959963984540054**2
    zero = wilson_interval(0, 10)
    assert zero.lo == 0.0 and zero.hi == pytest.approx(z2 / (10 + z2))
    half = wilson_interval(5, 10)
    assert (half.lo, half.hi) == (pytest.approx(0.2365931, abs=1e-6), pytest.approx(0.7634069, abs=1e-6))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def _run(objective: str, seed: int, fwd: int, rev: int) -> dict:
    """A run record with `fwd` / `rev` of 4 forward-only questions right (both-way pairs all right)."""
    counts = {"test/forward": fwd, "test/reverse": rev, "both/forward": 4, "both/reverse": 4}
    acc = {k: {"exact": c / 4, "contains": c / 4, "correct": c, "n": 4} for k, c in counts.items()}
    rank = {
        k: {"rank_acc": c / 4, "correct": c, "n": 4, "chance": 0.25, "mean_rank": 1.5}
        for k, c in counts.items()
        if k.startswith("test/")
    }
    return {"objective": objective, "seed": seed, "accuracy": acc, "ranking": rank}


def test_aggregate_pools_seeds():
    rows = aggregate([_run("arm", 1, 4, 0), _run("arm", 0, 3, 1), _run("llada", 0, 2, 2)])
    assert len(rows) == 2 * 4 + 2 * 2  # generation: 4 cells per objective; likelihood: 2
    key = ("exact", "arm", "test", "forward")
    arm_fwd = next(r for r in rows if (r["metric"], r["objective"], r["subset"], r["direction"]) == key)
    assert arm_fwd["seeds"] == [0, 1] and arm_fwd["per_seed"] == [0.75, 1.0]  # sorted by seed
    assert (arm_fwd["correct"], arm_fwd["n"]) == (7, 8)
    assert arm_fwd["t"]["mean"] == pytest.approx(0.875)
    assert arm_fwd["t"]["hi"] == 1.0  # clipped
    llada_rev = next(r for r in rows if (r["metric"], r["objective"], r["direction"]) == ("rank", "llada", "reverse"))
    assert llada_rev["per_seed"] == [0.5] and llada_rev["t"]["lo"] is None and llada_rev["contains_mean"] is None


# ---- the command ----------------------------------------------------------------------------------------------


def _main(argv, capsys):
    from llada_lightning.cli import main

    code = main(argv)
    return code, capsys.readouterr()


@pytest.mark.parametrize(
    ("flag", "value"), [("--seeds", "0"), ("--threads", "0"), ("--parallel", "-1")], ids=["seeds", "threads", "par"]
)
def test_bad_counts_are_one_line_config_errors(tmp_path, capsys, flag, value):
    code, cap = _main(["experiment", "reversal", "--quick", "--out", str(tmp_path / "o"), flag, value], capsys)
    assert code == 2
    assert cap.err.count("\n") == 1 and f"{flag} {value}" in cap.err and "must be >= 1" in cap.err
    assert not (tmp_path / "o").exists()


def test_out_under_a_file_is_a_config_error(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, cap = _main(["experiment", "reversal", "--quick", "--out", str(tmp_path / "f" / "o")], capsys)
    assert code == 2 and "is a file" in cap.err and cap.err.count("\n") == 1


@pytest.mark.slow  # trains two tiny runs (~20 s on 2 shared cores), then relaunches
def test_quick_end_to_end_then_reused(tmp_path, capsys):
    import torch

    out = tmp_path / "rev"
    threads = torch.get_num_threads()
    code, cap = _main(["experiment", "reversal", "--quick", "--out", str(out), "--threads", "1"], capsys)
    assert code == 0, cap.err
    assert torch.get_num_threads() == threads  # the runs' --threads does not leak into the caller
    assert "gen      ARM" in cap.out and "Nie et al. 2025" in cap.out
    record = json.loads((out / "reversal.json").read_text())
    rows = record["rows"]
    assert len(rows) == 2 * 4 + 2 * 2
    n_test = record["preset"]["n_test"]
    for r in rows:
        assert 0.0 <= r["t"]["mean"] <= 1.0 and r["t"]["lo"] is None  # one seed: no t interval
        assert 0.0 <= r["wilson"]["lo"] <= r["t"]["mean"] <= r["wilson"]["hi"] <= 1.0
        assert r["n"] == n_test and r["seeds"] == [0]
    with (out / "reversal.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and {t["metric"] for t in table} == {"exact", "rank"}
    assert (out / "reversal.png").read_bytes().startswith(b"\x89PNG") and (out / "reversal.pdf").stat().st_size > 0
    compute = record["compute"]
    assert compute["llada/seed0"]["steps"] == compute["arm/seed0"]["steps"] == record["preset"]["steps"]
    assert compute["llada/seed0"]["tokens"] == compute["arm/seed0"]["tokens"]
    runs = {r["objective"]: r for r in record["runs"]}
    for r in runs.values():
        assert len(r["records"]) == 4 * n_test
        assert all(rec["exact"] == (answer_of(rec["generated"]) == rec["expected"]) for rec in r["records"])
    evals = sorted((out / "eval").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in evals]

    code, cap = _main(["experiment", "reversal", "--quick", "--out", str(out)], capsys)
    assert code == 0, cap.err
    assert cap.out.count("already done") == 2  # both runs reused, not retrained
    assert [p.stat().st_mtime_ns for p in evals] == stamps  # their answers reused too
    assert json.loads((out / "reversal.json").read_text())["rows"] == rows


def test_answer_kinds_sorts_wrong_reverse_answers():
    def rec(subset, direction, asked, expected, generated):
        return {"subset": subset, "direction": direction, "prompt": prompt(asked), "expected": expected,
                "generated": generated}  # fmt: skip

    records = [
        rec("test", "forward", "Aba", "Bob", " Bob."),
        rec("test", "forward", "Cec", "Dad", " Dad."),
        rec("both", "forward", "Eve", "Fif", " Fif."),
        rec("both", "reverse", "Fif", "Eve", " Eve."),
        rec("test", "reverse", "Bob", "Aba", " Aba."),  # correct
        rec("test", "reverse", "Dad", "Cec", " Dad."),  # the prompt's own name
        rec("test", "reverse", "Bob", "Aba", " Cec."),  # another forward-only A
        rec("test", "reverse", "Bob", "Aba", " Dad."),  # a forward-only B
        rec("test", "reverse", "Bob", "Aba", " Eve."),  # a both-way name
        rec("test", "reverse", "Bob", "Aba", " Zzz."),
    ]
    assert answer_kinds(records) == {
        "correct": 1,
        "echo": 1,
        "other forward-only A": 1,
        "forward-only B": 1,
        "both-way name": 1,
        "none of the set": 1,
    }
