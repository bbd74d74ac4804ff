"""Multiple-choice scoring: task validation, accuracy bookkeeping, exact ARM values, the LLaDA estimator."""

from __future__ import annotations

import json

import pytest
import torch
from inference_tasks import next_line_task

from llada_lightning.config.errors import ConfigError
from llada_lightning.inference.multiple_choice import evaluate_multiple_choice, read_task
from llada_lightning.inference.scoring import encode_pair

GOOD = {"context": "To be, or not to be,", "choices": [" that is the question", " a fish"], "gold": 0}


def _write(tmp_path, lines):
    path = tmp_path / "task.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "line 3: not valid JSON"),
        ("[1, 2]", "line 3: expected a JSON object"),
        ({"context": "a", "choices": ["b", "c"]}, "line 3: missing gold"),
        ({"context": 1, "choices": ["b", "c"], "gold": 0}, "line 3: context must be a string"),
        ({"context": "a", "choices": "bc", "gold": 0}, "line 3: choices must be a list"),
        ({"context": "a", "choices": ["b"], "gold": 0}, "line 3: choices must be a list of at least 2"),
        ({"context": "a", "choices": ["b", ""], "gold": 0}, "line 3: choices must be a list of at least 2 non-empty"),
        ({"context": "a", "choices": ["b", "c"], "gold": 2}, r"line 3: gold must be an integer index .*0\.\.1"),
        ({"context": "a", "choices": ["b", "c"], "gold": True}, "line 3: gold must be an integer"),
    ],
)
def test_malformed_lines_name_the_line(tmp_path, bad, message):
    path = _write(tmp_path, [GOOD, "", bad])  # the blank line 2 is skipped but still counted
    with pytest.raises(ConfigError, match=message):
        read_task(path)


def test_empty_and_missing_task_files(tmp_path):
    with pytest.raises(ConfigError, match="no examples"):
        read_task(_write(tmp_path, ["", "  "]))
    with pytest.raises(ConfigError, match="no such file"):
        read_task(tmp_path / "missing.jsonl")


def test_read_task_keeps_line_numbers(tmp_path):
    examples = read_task(_write(tmp_path, ["", GOOD, GOOD]))
    assert [e.line for e in examples] == [2, 3]
    assert examples[0].choices == tuple(GOOD["choices"]) and examples[0].gold == 0


def _check_bookkeeping(result):
    """acc / acc_norm recomputed from the per-example log-likelihoods (normalised per answer token)."""
    rows = result["examples"]
    assert result["num_examples"] == len(rows)
    for r in rows:
        lls, lengths = r["loglik"], r["answer_tokens"]
        assert r["pred"] == max(range(len(lls)), key=lambda i: lls[i])
        normed = [ll / n for ll, n in zip(lls, lengths, strict=True)]
        assert r["pred_norm"] == max(range(len(lls)), key=lambda i: normed[i])
    assert result["acc"] == pytest.approx(sum(r["pred"] == r["gold"] for r in rows) / len(rows))
    assert result["acc_norm"] == pytest.approx(sum(r["pred_norm"] == r["gold"] for r in rows) / len(rows))
    assert 0.0 <= result["acc"] <= 1.0 and 0.0 <= result["acc_norm"] <= 1.0
    assert result["normalisation"] == "per answer token"


def test_arm_scores_are_exact_log_probabilities(arm_run, tmp_path):
    task = next_line_task(tmp_path / "task.jsonl", n=4)
    result = evaluate_multiple_choice(arm_run, task, mc_num=3, seed=5)
    assert result["estimator"] == "exact" and result["num_examples"] == 4
    _check_bookkeeping(result)
    # independent recomputation: one forward pass over context + choice, log-softmax of the next tokens
    tok, model = arm_run.tokenizer, arm_run.model
    for ex, row in zip(read_task(task), result["examples"], strict=True):
        for choice, ll in zip(ex.choices, row["loglik"], strict=True):
            context = ex.context.rstrip()  # the trailing newline belongs to the choice (lm-eval convention)
            n_ctx = len(tok.encode(context).ids)
            ids = torch.tensor(tok.encode(ex.context + choice).ids)
            logp = model(ids[None])[0].double().log_softmax(-1)
            expected = logp[torch.arange(n_ctx - 1, len(ids) - 1), ids[n_ctx:]].sum().item()
            assert ll == pytest.approx(expected, abs=1e-6)
    # exact: neither the seed nor mc_num matters
    again = evaluate_multiple_choice(arm_run, task, mc_num=50, seed=0)
    assert [r["loglik"] for r in again["examples"]] == [r["loglik"] for r in result["examples"]]


def test_llada_monte_carlo_is_seeded_and_per_example(llada_run, tmp_path):
    task = next_line_task(tmp_path / "task.jsonl", n=4)
    result = evaluate_multiple_choice(llada_run, task, mc_num=4, seed=1)
    assert result["estimator"] == "monte_carlo_lower_bound" and result["mc_num"] == 4
    _check_bookkeeping(result)
    lls = [r["loglik"] for r in result["examples"]]
    assert all(ll < 0 for row in lls for ll in row)
    assert [r["loglik"] for r in evaluate_multiple_choice(llada_run, task, mc_num=4, seed=1)["examples"]] == lls
    other = [r["loglik"] for r in evaluate_multiple_choice(llada_run, task, mc_num=4, seed=2)["examples"]]
    assert other != lls
    # an example's draws do not depend on its position: --limit gives the same first examples
    limited = evaluate_multiple_choice(llada_run, task, mc_num=4, seed=1, limit=2)
    assert limited["num_examples"] == 2 and [r["loglik"] for r in limited["examples"]] == lls[:2]


def test_llada_single_token_choices_are_scored_exactly(llada_run, tmp_path):
    """With a one-token answer the estimator has one term (l = 1, weight 1): log p(x | context, x masked)."""
    context = "What say you to"
    words = (" me", " you", " him", " her", " the", " my", " this", " that")
    single = [w for w in words if len(encode_pair(llada_run, context, w)[1]) == 1][:3]
    assert len(single) >= 2
    task = _write(tmp_path, [{"context": context, "choices": single, "gold": 0}])
    result = evaluate_multiple_choice(llada_run, task, mc_num=2, seed=3)
    prompt = llada_run.encode(context)
    for word, ll in zip(single, result["examples"][0]["loglik"], strict=True):
        (answer,) = encode_pair(llada_run, context, word)[1]
        logits = llada_run.model(torch.tensor([[*prompt, llada_run.mask_id]]))[0, -1].double()
        assert ll == pytest.approx(logits.log_softmax(-1)[answer].item(), abs=1e-5)


def test_bad_arguments(llada_run, tmp_path):
    task = _write(tmp_path, [GOOD])
    with pytest.raises(ConfigError, match="--limit 0"):
        evaluate_multiple_choice(llada_run, task, limit=0)
    with pytest.raises(ConfigError, match="--mc-num 0"):
        evaluate_multiple_choice(llada_run, task, mc_num=0)
