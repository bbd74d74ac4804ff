"""`llada sample` and `llada eval` on runs trained by `llada train` (through `llada_lightning.cli.main`)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from inference_tasks import next_line_task

from llada_lightning.cli import main
from llada_lightning.inference.scoring import encode_pair
from llada_lightning.sampling import generate, generate_ar

PROMPT = "ROMEO.\nWhat light"


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_llada_sample_greedy_matches_the_sampler(capsys, llada_run, llada_run_dir):
    code, out, _ = _run(capsys, "sample", llada_run_dir, "--prompt", PROMPT, "--gen-length", 16, "--block-length", 8)
    assert code == 0
    text = out.removesuffix("\n")
    assert text.startswith(PROMPT)
    ids = torch.tensor([llada_run.encode(PROMPT)])
    seq = generate(llada_run.model, ids, gen_length=16, steps=16, block_length=8, mask_id=llada_run.mask_id)
    new = seq[0, ids.shape[1] :].tolist()
    new = new[: new.index(llada_run.eos_id)] if llada_run.eos_id in new else new
    assert text == PROMPT + llada_run.decode(new)


@pytest.mark.parametrize(
    "flags", [["--threshold", "0.9"], ["--threshold", "0.9", "--cache", "dual"], ["--cache", "prefix"]]
)
def test_llada_sample_threshold_and_cache_match_the_sampler(capsys, llada_run, llada_run_dir, flags):
    args = ["sample", llada_run_dir, "--prompt", PROMPT, "--gen-length", 16, "--block-length", 8, "--no-stop-at-eos"]
    code, out, _ = _run(capsys, *args, *flags)
    assert code == 0
    options = dict(zip((f.removeprefix("--") for f in flags[::2]), flags[1::2], strict=True))
    threshold = float(options["threshold"]) if "threshold" in options else None
    steps = None if threshold else 16  # --steps may be omitted with --threshold
    ids = torch.tensor([llada_run.encode(PROMPT)])
    seq = generate(llada_run.model, ids, gen_length=16, steps=steps, block_length=8, mask_id=llada_run.mask_id,
                   threshold=threshold, cache=options.get("cache"))  # fmt: skip
    assert out.removesuffix("\n") == PROMPT + llada_run.decode(seq[0, ids.shape[1] :].tolist())
    if flags == ["--cache", "prefix"]:
        assert _run(capsys, *args, "--prompt-cache")[1] == out  # the older spelling


def test_llada_sample_is_reproducible_per_seed(capsys, llada_run_dir):
    args = ["sample", llada_run_dir, "--prompt", PROMPT, "--gen-length", 16, "--steps", 8, "--temperature", 1.0]
    args += ["--no-stop-at-eos", "--completion-only", "--remasking", "random"]
    code, first, _ = _run(capsys, *args, "--seed", 3)
    assert code == 0 and first.strip()  # a non-empty continuation
    assert _run(capsys, *args, "--seed", 3)[1] == first
    assert _run(capsys, *args, "--seed", 4)[1] != first
    code, cached, _ = _run(capsys, *args, "--seed", 3, "--prompt-cache", "--block-length", 8)
    assert code == 0 and cached.strip()


def test_arm_sample_uses_generate_ar(capsys, arm_run, arm_run_dir):
    args = ["sample", arm_run_dir, "--prompt", PROMPT, "--max-new-tokens", 12, "--temperature", 1.0, "--top-k", 20]
    code, out, _ = _run(capsys, *args, "--seed", 7, "--no-stop-at-eos")
    assert code == 0 and out.startswith(PROMPT) and len(out.strip()) > len(PROMPT)
    assert _run(capsys, *args, "--seed", 7, "--no-stop-at-eos")[1] == out
    gen = torch.Generator().manual_seed(7)
    ids = torch.tensor([arm_run.encode(PROMPT)])
    seq = generate_ar(arm_run.model, ids, max_new_tokens=12, temperature=1.0, top_k=20, generator=gen)
    assert out.removesuffix("\n") == PROMPT + arm_run.decode(seq[0, ids.shape[1] :].tolist())


def test_empty_prompt_starts_a_document(capsys, arm_run_dir):
    args = ["--max-new-tokens", 8, "--no-stop-at-eos", "--temperature", 1.0]
    code, out, _ = _run(capsys, "sample", arm_run_dir, "--prompt", "", *args)
    assert code == 0 and out.strip()


@pytest.mark.parametrize(
    ("run", "flags", "message"),
    [
        ("llada", ["--top-k", "5"], "--top-k does not apply .*a LLaDA run"),
        ("arm", ["--steps", "4", "--prompt-cache"], "--steps --prompt-cache does not apply .*an ARM run"),
        ("arm", ["--threshold", "0.9", "--cache", "dual"], "--threshold --cache does not apply .*an ARM run"),
        ("llada", ["--threshold", "1.5"], r"threshold=1.5 is not in \(0, 1\]; pass --threshold 0.9"),
        ("llada", ["--threshold", "0.9", "--remasking", "random"], "threshold=0.9 needs remasking='low_confidence'"),
        ("llada", ["--prompt-cache", "--cache", "dual"], "prompt_cache=True means cache='prefix', but cache='dual'"),
        ("llada", ["--gen-length", "30", "--block-length", "7"], "divisible by block_length=7"),
        ("arm", ["--gen-length", "0"], "gen_length=0"),
        (
            "llada",
            ["--gen-length", "16", "--steps", "32"],
            r"steps=32 is more than gen_length=16 .*--steps 16 or fewer$",
        ),
        (
            "llada",
            ["--gen-length", "16", "--steps", "32", "--block-length", "8"],
            r"--steps 16 or fewer, a multiple of gen_length/block_length=16/8=2$",
        ),
    ],
)
def test_sample_flag_errors_exit_2(capsys, llada_run_dir, arm_run_dir, run, flags, message):
    run_dir = llada_run_dir if run == "llada" else arm_run_dir
    code, _, err = _run(capsys, "sample", run_dir, "--prompt", "x", *flags)
    assert code == 2 and re.search(message, err.strip()) and err.count("\n") == 1, err


def _no_sampling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the sampler ran although the settings were invalid")

    monkeypatch.setattr("llada_lightning.sampling.generate", refuse)
    monkeypatch.setattr("llada_lightning.sampling.generate_ar", refuse)


@pytest.mark.parametrize("objective", ["llada", "arm"])
def test_sample_refuses_more_tokens_than_the_context_before_sampling(
    capsys, monkeypatch, llada_run, arm_run, llada_run_dir, arm_run_dir, objective
):
    loaded, run_dir = (llada_run, llada_run_dir) if objective == "llada" else (arm_run, arm_run_dir)
    _no_sampling(monkeypatch)
    limit = loaded.max_seq_len
    long_prompt = "To be, or not to be, that is the question. " * 200
    n = len(loaded.encode(long_prompt))
    assert n + 16 > limit
    code, out, err = _run(capsys, "sample", run_dir, "--prompt", long_prompt, "--gen-length", 16)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"the prompt ({n} tokens) + --gen-length 16 = {n + 16} tokens exceed" in err
    assert f"(model.max_seq_len={limit}); shorten --prompt or lower --gen-length" in err

    n = len(loaded.encode(PROMPT))
    code, _, err = _run(capsys, "sample", run_dir, "--prompt", PROMPT, "--gen-length", limit)
    assert code == 2 and f"the prompt ({n} tokens) + --gen-length {limit} = {n + limit} tokens exceed" in err


@pytest.mark.parametrize("objective", ["llada", "arm"])
def test_eval_prints_accuracy_and_count(capsys, tmp_path, llada_run_dir, arm_run_dir, objective):
    run_dir = llada_run_dir if objective == "llada" else arm_run_dir
    task = next_line_task(tmp_path / "task.jsonl", n=8)
    code, out, _ = _run(capsys, "eval", run_dir, "--task", task, "--mc-num", 4)
    assert code == 0
    assert f"{task}: 8 examples" in out
    acc = float(re.search(r"^acc\s+([0-9.]+)", out, re.M).group(1))
    acc_norm = float(re.search(r"^acc_norm\s+([0-9.]+)\s+\(log-likelihood per answer token\)", out, re.M).group(1))
    assert 0.0 <= acc <= 1.0 and 0.0 <= acc_norm <= 1.0
    assert ("Monte Carlo lower bound (mc_num=4, seed=0)" in out) == (objective == "llada")

    code, out, _ = _run(capsys, "eval", run_dir, "--task", task, "--mc-num", 4, "--limit", 3, "--json")
    result = json.loads(out)
    assert code == 0 and result["num_examples"] == 3 and len(result["examples"]) == 3
    assert result["objective"] == objective and 0.0 <= result["acc"] <= 1.0


def test_eval_malformed_task_exits_2_with_the_line(capsys, tmp_path, llada_run_dir):
    task = tmp_path / "bad.jsonl"
    good = json.dumps({"context": "a", "choices": ["b", "c"], "gold": 1})
    task.write_text(f'{good}\n{good}\n{{"context": "a", "choices": ["b", "c"], "gold": 5}}\n')
    code, out, err = _run(capsys, "eval", llada_run_dir, "--task", task)
    assert code == 2 and out == ""
    assert f"{task} line 3: gold must be an integer index" in err

    code, _, err = _run(capsys, "eval", llada_run_dir, "--task", tmp_path / "missing.jsonl")
    assert code == 2 and "no such file" in err


def test_eval_refuses_a_context_beyond_the_model_context_before_scoring(
    capsys, monkeypatch, tmp_path, arm_run, arm_run_dir
):
    limit = arm_run.max_seq_len
    context = "To be, or not to be, that is the question. " * 200
    task = tmp_path / "long.jsonl"
    lines = [{"context": "Good morrow,", "choices": [" sir", " madam"], "gold": 0}]
    lines.append({"context": context, "choices": [" sir", " madam"], "gold": 1})
    task.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with monkeypatch.context() as patch:  # nothing is scored: every example is checked first

        def refuse(*args, **kwargs):
            raise AssertionError("scored before every example was checked")

        patch.setattr("llada_lightning.inference.scoring.continuation_loglik", refuse)
        code, out, err = _run(capsys, "eval", arm_run_dir, "--task", task)
    n, a = (len(ids) for ids in encode_pair(arm_run, context, " sir"))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"{task} line 2 choice 0: context {n} + choice {a} = {n + a} tokens exceed the model's context" in err
    assert f"(model.max_seq_len={limit}); pass --max-length {limit} to left-truncate contexts" in err

    code, out, _ = _run(capsys, "eval", arm_run_dir, "--task", task, "--max-length", limit)
    assert code == 0 and f"{task}: 2 examples" in out

    code, _, err = _run(capsys, "eval", arm_run_dir, "--task", task, "--max-length", limit + 1)
    assert code == 2 and f"--max-length {limit + 1} exceeds the model's context (model.max_seq_len={limit})" in err
