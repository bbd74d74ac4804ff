"""Chat with a fine-tuned run: the chat prompt, `chat_reply`, `llada sample --chat` (one turn and stdin), the EOS
options' plumbing and the errors."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from llada_lightning.cli import main
from llada_lightning.config.compose import compose
from llada_lightning.config.errors import ConfigError
from llada_lightning.inference import generation
from llada_lightning.inference.generation import chat_reply, fit_history, generate_ids
from llada_lightning.inference.loading import LoadedRun, load_run
from llada_lightning.sft.chat import END_HEADER, EOT, LLADA_BOS, LLADA_MARKERS, START_HEADER, ChatTemplate
from llada_lightning.training.run import train

TINY = ["model=cpu-0.4m", "data.seq_len=64", "train.batch_size=16", "train.progress_bar=false", "train.max_steps=4"]
SFT = ["train.max_steps=4", "train.progress_bar=false", "train.warmup_min_steps=1", "sft.instructions=200"]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _build(root: Path, objective: str) -> dict[str, Path]:
    base, sft = root / f"{objective}-base", root / f"{objective}-sft"
    train(compose([*TINY, f"objective={objective}", f"run_dir={base}"]))
    train(compose([f"sft.parent={base}", *SFT, f"run_dir={sft}"]))
    return {"base": base, "sft": sft}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """A pre-trained and a fine-tuned run of each objective, a few steps each (shared by the module)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("chat-runs")
        return {objective: _build(root, objective) for objective in ("llada", "arm")}
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def llada_sft(runs) -> LoadedRun:
    return load_run(runs["llada"]["sft"])


@pytest.fixture(scope="module")
def arm_sft(runs) -> LoadedRun:
    return load_run(runs["arm"]["sft"])


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


class Spy:
    """Wraps a function of `generation` and records each call's arguments (and the result)."""

    def __init__(self, monkeypatch, name: str, replacement=None) -> None:
        self.inner = replacement or getattr(generation, name)
        self.calls: list[tuple[tuple, dict, object]] = []
        monkeypatch.setattr(generation, name, self)

    def __call__(self, *args, **kwargs):
        result = self.inner(*args, **kwargs)
        self.calls.append((args, kwargs, result))
        return result


# ----------------------------------------------------------------------------------------------- the template


def test_chat_template_is_the_sft_runs_and_its_markers_are_in_the_vocabulary(llada_sft):
    template = llada_sft.chat_template()
    assert isinstance(template, ChatTemplate) and template.kind == "llada"
    size = llada_sft.tokenizer.get_vocab_size(with_added_tokens=True)
    ids = [llada_sft.tokenizer.token_to_id(t) for t in LLADA_MARKERS]
    assert None not in ids and max(ids) < llada_sft.cfg.model.vocab_size
    assert llada_sft.tokenizer.get_vocab_size(with_added_tokens=True) == size  # nothing was added


def test_chat_prompt_ids_are_the_templates_encode_prompt(monkeypatch, llada_sft):
    spy = Spy(monkeypatch, "generate_ids")
    messages = [{"role": "system", "content": "Be brief."}, *QUESTION]
    chat_reply(llada_sft, messages, gen_length=8)
    (args, kwargs, _), *_ = spy.calls
    prompt = args[1]
    # the template rebuilt from the run's tokenizer.json, and LLaDA's layout written out by hand
    tokenizer = Tokenizer.from_file(str(llada_sft.run_dir / "tokenizer.json"))
    assert prompt == ChatTemplate(tokenizer, llada_sft.eos_id).encode_prompt(messages)
    assert tokenizer.token_to_id(LLADA_BOS) is None  # so BOS is the document separator EOS
    text = tokenizer.id_to_token(llada_sft.eos_id)
    text += "".join(f"{START_HEADER}{m['role']}{END_HEADER}\n\n{m['content']}{EOT}" for m in messages)
    text += f"{START_HEADER}assistant{END_HEADER}\n\n"
    assert prompt == tokenizer.encode(text, add_special_tokens=False).ids
    assert prompt.count(tokenizer.token_to_id(START_HEADER)) == 3 and kwargs["stop_at_eos"] is True


def test_chat_reply_cuts_the_answer_at_eot(monkeypatch, llada_sft):
    words = llada_sft.encode(" Paris is the capital")
    eot = llada_sft.tokenizer.token_to_id(EOT)
    Spy(monkeypatch, "generate_ids", lambda *a, **k: [*words, eot, *llada_sft.encode(" more"), eot])
    assert chat_reply(llada_sft, QUESTION) == llada_sft.decode(words)
    Spy(monkeypatch, "generate_ids", lambda *a, **k: [*words, llada_sft.tokenizer.token_to_id(START_HEADER)])
    assert START_HEADER not in chat_reply(llada_sft, QUESTION)  # markers are never part of the text


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "the conversation is empty"),
        ([{"role": "robot", "content": "hi"}], "message 0 has role 'robot'; use one of system, user, assistant"),
        ([{"role": "user"}], "message 0 is not a"),
    ],
)
def test_chat_reply_refuses_malformed_messages(llada_sft, messages, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        chat_reply(llada_sft, messages)


def test_a_run_that_was_not_fine_tuned_has_no_chat_template(runs):
    base = load_run(runs["llada"]["base"])
    size = base.tokenizer.get_vocab_size(with_added_tokens=True)
    with pytest.raises(ConfigError, match=re.escape(f"{base.run_dir}: this run was not fine-tuned")):
        base.chat_template()
    assert base.tokenizer.get_vocab_size(with_added_tokens=True) == size  # no marker was added on the way


# ----------------------------------------------------------------------------------------------- EOS options


def test_eos_options_reach_the_sampler_with_the_eot_id(monkeypatch, llada_sft):
    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        prompt = args[1]
        return torch.cat((prompt, prompt.new_zeros(1, kwargs["gen_length"])), dim=1)

    monkeypatch.setattr("llada_lightning.sampling.generate", record)
    generate_ids(llada_sft, [1, 2], gen_length=8, logits_eos_inf=True, confidence_eos_eot_inf=True, stop_at_eos=False)
    assert seen["logits_eos_inf"] and seen["confidence_eos_eot_inf"]
    assert seen["eos_id"] == llada_sft.eos_id and seen["eot_id"] == llada_sft.tokenizer.token_to_id(EOT)
    generate_ids(llada_sft, [1, 2], gen_length=8)
    assert not seen["logits_eos_inf"] and not seen["confidence_eos_eot_inf"]


def test_logits_eos_inf_keeps_eos_out_of_a_real_runs_answer(llada_sft):
    kwargs = dict(gen_length=32, temperature=1.0, seed=1, stop_at_eos=False)
    prompt = llada_sft.chat_template().encode_prompt(QUESTION)
    plain = generate_ids(llada_sft, prompt, **kwargs)
    assert llada_sft.eos_id in plain  # the check can fail: this fine-tuned run ends its answers with EOS
    assert llada_sft.eos_id not in generate_ids(llada_sft, prompt, logits_eos_inf=True, **kwargs)


# ----------------------------------------------------------------------------------------------- llada sample --chat


@pytest.mark.parametrize("objective", ["llada", "arm"])
def test_chat_prompt_prints_only_chat_replys_answer(capsys, runs, llada_sft, arm_sft, objective):
    loaded, run_dir = (llada_sft, runs["llada"]["sft"]) if objective == "llada" else (arm_sft, runs["arm"]["sft"])
    flags = ["--logits-eos-inf"] if objective == "llada" else []  # the answer cannot end at once
    args = ["sample", run_dir, "--chat", "--prompt", QUESTION[0]["content"], "--gen-length", 16]
    code, out, err = _run(capsys, *args, "--temperature", 1.0, "--seed", 2, *flags)
    assert code == 0, err
    answer = chat_reply(loaded, QUESTION, gen_length=16, temperature=1.0, seed=2, logits_eos_inf=bool(flags))
    assert out == answer + "\n" and answer.strip()
    assert not any(marker in out for marker in LLADA_MARKERS) and QUESTION[0]["content"] not in out


def test_chat_takes_confidence_eos_eot_inf_on_a_llada_run(capsys, runs, llada_sft):
    args = ["sample", runs["llada"]["sft"], "--chat", "--prompt", "Name a colour.", "--gen-length", 16]
    code, out, err = _run(capsys, *args, "--confidence-eos-eot-inf", "--block-length", 8)
    assert code == 0, err
    question = [{"role": "user", "content": "Name a colour."}]
    assert out == chat_reply(llada_sft, question, gen_length=16, block_length=8, confidence_eos_eot_inf=True) + "\n"


def test_chat_system_message_goes_first(capsys, monkeypatch, runs):
    spy = Spy(monkeypatch, "chat_reply")
    code, _, _ = _run(capsys, "sample", runs["arm"]["sft"], "--chat", "--prompt", "hi", "--system", "Be kind.")
    assert code == 0
    assert spy.calls[0][0][1] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}]


@pytest.mark.parametrize("objective", ["llada", "arm"])
def test_multi_turn_chat_on_stdin_keeps_the_history(capsys, monkeypatch, runs, objective):
    spy = Spy(monkeypatch, "chat_reply")
    prompts = Spy(monkeypatch, "generate_ids")
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello there\nWhat did I say?\n\nnever read\n"))
    code, out, err = _run(capsys, "sample", runs[objective]["sft"], "--chat", "--gen-length", 8, "--system", "Hi.")
    assert code == 0 and err == ""
    (first, _, answer1), (second, _, answer2) = spy.calls  # the empty line ended the conversation
    assert out == f"assistant: {answer1}\nassistant: {answer2}\n"
    system = {"role": "system", "content": "Hi."}
    assert first[1] == [system, {"role": "user", "content": "Hello there"}]
    exchange = [{"role": "assistant", "content": answer1}, {"role": "user", "content": "What did I say?"}]
    assert second[1] == [*first[1], *exchange]
    loaded = first[0]
    second_prompt = prompts.calls[1][0][1]
    assert second_prompt == loaded.chat_template().encode_prompt(second[1])
    assert f"Hello there{EOT}{START_HEADER}assistant{END_HEADER}\n\n{answer1}{EOT}" in loaded.tokenizer.decode(
        second_prompt, skip_special_tokens=False
    )


def test_multi_turn_chat_ends_at_eof(capsys, monkeypatch, runs):
    spy = Spy(monkeypatch, "chat_reply", lambda loaded, messages, **kwargs: "fine")
    monkeypatch.setattr("sys.stdin", io.StringIO("one\ntwo"))  # no newline at the end, no empty line
    code, out, _ = _run(capsys, "sample", runs["arm"]["sft"], "--chat")
    assert code == 0 and out == "assistant: fine\nassistant: fine\n" and len(spy.calls) == 2


def test_multi_turn_chat_drops_the_oldest_turns_to_fit(capsys, monkeypatch, runs, arm_sft):
    long_answer = " ".join(["word"] * 40)
    spy = Spy(monkeypatch, "chat_reply", lambda loaded, messages, **kwargs: long_answer)
    question = "and then?"
    alone = len(arm_sft.chat_template().encode_prompt([{"role": "user", "content": question}]))
    gen_length = arm_sft.max_seq_len - alone  # one turn fits exactly, two do not
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{question}\n{question}\n{question}\n"))
    code, out, err = _run(capsys, "sample", runs["arm"]["sft"], "--chat", "--gen-length", gen_length)
    assert code == 0 and out.count("assistant: ") == 3
    assert err.count("dropped the oldest turns") == 1  # said once
    assert f"model.max_seq_len={arm_sft.max_seq_len} with --gen-length {gen_length}" in err
    assert [call[0][1] for call in spy.calls] == [[{"role": "user", "content": question}]] * 3


def test_fit_history_keeps_the_system_message_and_the_last_turn(arm_sft):
    system = {"role": "system", "content": "S"}
    turns = [{"role": r, "content": f"{r} {i} " * 6} for i in range(3) for r in ("user", "assistant")]
    messages = [system, *turns, {"role": "user", "content": "last"}]
    template = arm_sft.chat_template()
    assert fit_history(arm_sft, messages, 8) == (messages, 0)
    need = len(template.encode_prompt([system, *turns[2:], messages[-1]]))
    kept, dropped = fit_history(arm_sft, messages, arm_sft.max_seq_len - need)
    assert kept == [system, *turns[2:], messages[-1]] and dropped == 1
    assert fit_history(arm_sft, messages, arm_sft.max_seq_len) == ([system, messages[-1]], 3)


def test_a_turn_too_long_for_the_context_exits_2(capsys, monkeypatch, runs, arm_sft):
    monkeypatch.setattr("sys.stdin", io.StringIO("To be, or not to be. " * 200 + "\n"))
    code, out, err = _run(capsys, "sample", runs["arm"]["sft"], "--chat", "--gen-length", 16)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"exceed the model's context (model.max_seq_len={arm_sft.max_seq_len})" in err


# ----------------------------------------------------------------------------------------------- errors


def test_chat_on_a_run_that_was_not_fine_tuned_exits_2(capsys, monkeypatch, runs):
    base = runs["llada"]["base"]
    stdin = io.StringIO("hello\n")
    monkeypatch.setattr("sys.stdin", stdin)
    for extra in (["--prompt", "hello"], []):
        code, out, err = _run(capsys, "sample", base, "--chat", *extra)
        assert code == 2 and out == "" and err.count("\n") == 1
        assert err.strip() == (
            f"llada: config error: {base}: this run was not fine-tuned with a chat template (its tokenizer has no "
            f"<|start_header_id|>); fine-tune it with `llada sft {base}` or drop --chat"
        )
    assert stdin.tell() == 0  # refused before reading the conversation


@pytest.mark.parametrize(
    ("objective", "flags", "message"),
    [
        ("arm", ["--chat", "--prompt", "x", "--logits-eos-inf"], r"--logits-eos-inf does not apply .*an ARM run"),
        ("arm", ["--prompt", "x", "--confidence-eos-eot-inf"], r"--confidence-eos-eot-inf does not apply .*an ARM"),
        ("llada", [], r"--prompt is required .*or pass --chat to chat on stdin$"),
        ("llada", ["--prompt", "x", "--system", "y"], r"--system applies to --chat only"),
        ("llada", ["--chat", "--prompt", "x", "--no-stop-at-eos"], r"--no-stop-at-eos does not apply to --chat"),
    ],
)
def test_chat_flag_errors_exit_2(capsys, runs, objective, flags, message):
    code, out, err = _run(capsys, "sample", runs[objective]["sft"], *flags)
    assert code == 2 and out == "" and err.count("\n") == 1 and re.search(message, err.strip()), err


# ----------------------------------------------------------------------------------------------- exported


@pytest.mark.parametrize("objective", ["llada", "arm"])
def test_an_exported_fine_tuned_run_chats_like_the_run(capsys, tmp_path, runs, objective):
    """`llada export` writes the run's chat template (LLaDA-8B-Instruct's Jinja text for the llada layout) into
    tokenizer_config.json; chatting with the export renders the same prompt and gives the same answer."""
    from llada_lightning.interop import export_run

    out = export_run(runs[objective]["sft"], tmp_path / "hf")
    argv = ["--chat", "--prompt", QUESTION[0]["content"], "--gen-length", "16", "--temperature", "0.8", "--seed", "1"]
    code_run, answer_run, _ = _run(capsys, "sample", runs[objective]["sft"], *argv)
    code_hf, answer_hf, err = _run(capsys, "sample", out, *argv)
    assert code_run == code_hf == 0, err
    assert answer_hf == answer_run
    exported, run = load_run(out), load_run(runs[objective]["sft"])
    assert exported.chat_template().encode_prompt(QUESTION) == run.chat_template().encode_prompt(QUESTION)
