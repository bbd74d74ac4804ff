"""The lm-evaluation-harness adapter: LM methods on locally built Instances, and simple_evaluate on a local
YAML + JSONL task (no hub access: HF_DATASETS_OFFLINE=1 is set suite-wide in tests/conftest.py)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
import torch
from inference_tasks import next_line_task

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'llada-lightning[eval]')")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402

from llada_lightning.config.errors import ConfigError  # noqa: E402
from llada_lightning.inference.generation import generate_ids  # noqa: E402
from llada_lightning.inference.lm_eval_adapter import (  # noqa: E402
    LLaDALightningLM,
    available_device,
    fit_generation_context,
    truncate_at,
)
from llada_lightning.inference.multiple_choice import evaluate_multiple_choice  # noqa: E402
from llada_lightning.sampling import generate  # noqa: E402

PROMPT = "ROMEO.\nWhat light"


def _requests(kind, args_list):
    return [Instance(kind, {}, args, i, ("local", i, 1)) for i, args in enumerate(args_list)]


@pytest.fixture(scope="module")
def llada_lm(llada_run_dir):
    return LLaDALightningLM.create_from_arg_string(
        f"run_dir={llada_run_dir},mc_num=4,gen_length=8,steps=8,block_length=4,seed=1"
    )


@pytest.fixture(scope="module")
def arm_lm(arm_run_dir):
    return LLaDALightningLM.create_from_arg_string(f"run_dir={arm_run_dir},gen_length=8,top_k=none")


def test_registered_under_llada_lightning(llada_lm):
    assert get_model("llada_lightning") is LLaDALightningLM
    assert llada_lm.mc_num == 4 and llada_lm.block_length == 4 and llada_lm.max_length == 32


def test_llada_loglikelihood_is_seeded_per_request(llada_lm):
    pairs = [("To be, or not to be,", " that is the question"), ("", "Good morrow"), ("ROMEO. ", "What")]
    out = llada_lm.loglikelihood(_requests("loglikelihood", pairs))
    assert len(out) == 3
    assert all(isinstance(ll, float) and ll < 0 and isinstance(g, bool) for ll, g in out)
    # the same request gets the same value wherever it sits in the list
    reversed_out = llada_lm.loglikelihood(_requests("loglikelihood", pairs[::-1]))
    assert reversed_out[::-1] == out


def _greedy_llada_continuation(run):
    """A (prompt, greedy ids) pair whose decoded text re-encodes to the same ids (a tiny model's greedy output,
    e.g. three newline tokens, can re-encode as one merged token, which is then not its greedy decode)."""
    for prompt_text in (PROMPT, "KING HENRY.\nNow", "To be, or not to be,", "Good morrow"):
        prompt = run.encode(prompt_text)
        for n in (3, 2, 1):
            seq = generate(
                run.model, torch.tensor([prompt]), gen_length=n, steps=n, block_length=n, mask_id=run.mask_id
            )
            ids = seq[0, len(prompt) :].tolist()
            if run.eos_id not in ids and run.encode(prompt_text + run.decode(ids))[len(prompt) :] == ids:
                return prompt_text, ids
    pytest.fail("no greedy continuation survives a tokenisation round trip")


def test_llada_is_greedy_checks_greedy_decoding(llada_lm):
    run = llada_lm.run
    prompt_text, greedy_ids = _greedy_llada_continuation(run)
    greedy_text = run.decode(greedy_ids)
    other_text = " Xyzzy quux"  # not what a Shakespeare model decodes greedily
    (_, greedy), (_, not_greedy) = llada_lm.loglikelihood(
        _requests("loglikelihood", [(prompt_text, greedy_text), (prompt_text, other_text)])
    )
    assert greedy is True and not_greedy is False


def test_arm_loglikelihood_is_exact(arm_lm):
    run = arm_lm.run
    ((ll, _),) = arm_lm.loglikelihood(_requests("loglikelihood", [("Good morrow,", " sir")]))
    ids = torch.tensor(run.encode("Good morrow, sir"))
    n_ctx = len(run.encode("Good morrow,"))
    logp = run.model(ids[None])[0].double().log_softmax(-1)
    assert ll == pytest.approx(logp[torch.arange(n_ctx - 1, len(ids) - 1), ids[n_ctx:]].sum().item(), abs=1e-6)


def test_loglikelihood_rolling(arm_lm, llada_lm):
    text = "Now is the winter of our discontent made glorious summer by this sun of York"
    run = arm_lm.run
    ids = torch.tensor([run.eos_id, *run.encode(text)])
    assert len(ids) <= arm_lm.max_length  # one window: the exact log p(text | EOS)
    logp = run.model(ids[None])[0].double().log_softmax(-1)
    (ll,) = arm_lm.loglikelihood_rolling(_requests("loglikelihood_rolling", [(text,)]))
    assert ll == pytest.approx(logp[torch.arange(len(ids) - 1), ids[1:]].sum().item(), abs=1e-6)
    a, b = llada_lm.loglikelihood_rolling(_requests("loglikelihood_rolling", [(text,), (text,)]))
    assert a == b and a < 0


def test_generate_until_truncates_at_the_stop_strings(llada_lm, arm_lm):
    for lm in (llada_lm, arm_lm):
        run = lm.run
        (full,) = lm.generate_until(_requests("generate_until", [(PROMPT, {"until": []})]))
        if lm is llada_lm:  # the model args: gen_length 8, steps 8, block_length 4; greedy
            seq = generate(
                run.model,
                torch.tensor([run.encode(PROMPT)]),
                gen_length=8,
                steps=8,
                block_length=4,
                mask_id=run.mask_id,
            )
            new = seq[0, len(run.encode(PROMPT)) :].tolist()
            new = new[: new.index(run.eos_id)] if run.eos_id in new else new
            assert full == run.decode(new)
        assert full, "the tiny model generated nothing to truncate"
        stop = full[len(full) // 2]
        (cut,) = lm.generate_until(_requests("generate_until", [(PROMPT, {"until": ["@@", stop]})]))
        assert cut == full[: full.index(stop)] and stop not in cut
    (short,) = arm_lm.generate_until(_requests("generate_until", [(PROMPT, {"until": [], "max_gen_toks": 2})]))
    assert full.startswith(short) and len(short) < len(full)


def test_max_length_beyond_the_model_context_is_refused(arm_run_dir, arm_run):
    limit = arm_run.max_seq_len
    with pytest.raises(ConfigError, match=rf"max_length={limit + 1} exceeds .*model.max_seq_len={limit}"):
        LLaDALightningLM.create_from_arg_string(f"run_dir={arm_run_dir},max_length={limit + 1}")


def test_llada_steps_beyond_gen_length_fail_at_construction(llada_run_dir):
    with pytest.raises(ConfigError, match=r"steps=16 is more than gen_length=8 .*--steps 8 or fewer"):
        LLaDALightningLM.create_from_arg_string(f"run_dir={llada_run_dir},gen_length=8,steps=16")


def test_llada_threshold_and_cache_model_args(llada_run_dir, llada_run):
    lm = LLaDALightningLM.create_from_arg_string(
        f"run_dir={llada_run_dir},gen_length=8,block_length=4,threshold=0.9,cache=dual"
    )
    assert lm.threshold == 0.9 and lm.cache == "dual" and lm.steps is None
    (text,) = lm.generate_until(_requests("generate_until", [(PROMPT, {"until": []})]))
    prompt = torch.tensor([llada_run.encode(PROMPT)])
    seq = generate(llada_run.model, prompt, gen_length=8, block_length=4, mask_id=llada_run.mask_id, threshold=0.9,
                   cache="dual")  # fmt: skip
    new = seq[0, prompt.shape[1] :].tolist()
    assert text == llada_run.decode(new[: new.index(llada_run.eos_id)] if llada_run.eos_id in new else new)
    with pytest.raises(ConfigError, match=r"threshold=2.0 is not in \(0, 1\]"):
        LLaDALightningLM.create_from_arg_string(f"run_dir={llada_run_dir},gen_length=8,threshold=2")
    with pytest.raises(ConfigError, match=r"cache='full' is not one of prefix, dual"):
        LLaDALightningLM.create_from_arg_string(f"run_dir={llada_run_dir},gen_length=8,cache=full")


def test_generation_context_leaves_room_for_the_generated_tokens():
    prompt = list(range(100))
    assert fit_generation_context(prompt, 32, 500) == prompt[-32:]  # max_length binds
    assert fit_generation_context(prompt, 32, 10) == prompt[-10:]  # max_seq_len - generated tokens binds
    assert fit_generation_context(prompt, 200, 500) == prompt


def test_generate_until_fits_a_long_context_into_the_model(arm_lm):
    """A context longer than model.max_seq_len - gen_length is left-truncated, as lm-eval's HFLM does."""
    run = arm_lm.run
    context = "To be, or not to be, that is the question. " * 200
    long_lm = LLaDALightningLM.create_from_arg_string(
        f"run_dir={run.run_dir},gen_length=8,max_length={run.max_seq_len}"
    )
    (text,) = long_lm.generate_until(_requests("generate_until", [(context, {"until": []})]))
    ids = generate_ids(run, run.encode(context)[-(run.max_seq_len - 8) :], gen_length=8, seed=None, temperature=0.0)
    assert text == run.decode(ids)


def test_a_cuda_device_this_machine_lacks_falls_back_to_the_cpu(monkeypatch):
    """lm-eval's command line passes device=cuda:0 unless told otherwise (HFLM falls back the same way)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert available_device("cuda:0") == "cpu" and available_device("cuda") == "cpu"
    assert available_device(None) == "cpu" and available_device("cpu") == "cpu"


def test_truncate_at():
    assert truncate_at("abc\n\ndef", ["\n\n", "c"]) == "ab"
    assert truncate_at("abc", ["", "x"]) == "abc"


def test_simple_evaluate_on_a_local_task(tmp_path, llada_run, llada_run_dir):
    data = next_line_task(tmp_path / "data.jsonl", n=6)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "local_mc.yaml").write_text(
        json.dumps(  # JSON is YAML: no quoting surprises
            {
                "task": "llada_local_mc",
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(tmp_path / "hf")},
                "test_split": "test",
                "output_type": "multiple_choice",
                "doc_to_text": "{{context}}",
                "doc_to_choice": "{{choices}}",
                "doc_to_target": "{{gold}}",
                "target_delimiter": "",
                "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            }
        )
    )
    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(
        model="llada_lightning",
        model_args=f"run_dir={llada_run_dir},mc_num=4",
        tasks=["llada_local_mc"],
        task_manager=TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False),
        limit=4,
        bootstrap_iters=0,
        log_samples=False,
    )
    assert results["n-samples"]["llada_local_mc"]["effective"] == 4
    acc = results["results"]["llada_local_mc"]["acc,none"]
    # the harness asks for the same (context, choice) log-likelihoods as `llada eval`, with the same seeded draws
    assert acc == pytest.approx(evaluate_multiple_choice(llada_run, data, mc_num=4, seed=0, limit=4)["acc"])


def test_clear_error_without_lm_eval(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    monkeypatch.setitem(sys.modules, "lm_eval.api", None)
    monkeypatch.setitem(sys.modules, "lm_eval.api.model", None)
    monkeypatch.delitem(sys.modules, "llada_lightning.inference.lm_eval_adapter")
    with pytest.raises(ImportError, match=r"pip install 'llada-lightning\[eval\]'"):
        importlib.import_module("llada_lightning.inference.lm_eval_adapter")


def test_the_rest_of_the_package_needs_neither_lm_eval_nor_torch_at_import():
    code = (
        "import sys; sys.modules['lm_eval'] = None\n"
        "import llada_lightning.inference.cli, llada_lightning.inference.loading\n"
        "import llada_lightning.inference.multiple_choice, llada_lightning.inference.scoring\n"
        "import llada_lightning.inference.generation\n"
        "assert 'torch' not in sys.modules, 'torch imported at module level'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
