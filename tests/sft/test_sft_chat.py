"""Chat templates: the LLaDA layout round trip, multi-turn splitting, markers added, Jinja templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llada_lightning.config.errors import ConfigError
from llada_lightning.data.tokenizer import train_bpe
from llada_lightning.sft.chat import EOT, LLADA_MARKERS, START_HEADER, ChatTemplate, load_template, split_turns

DIALOGUE = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Remember the word apple."},
    {"role": "assistant", "content": "I will remember apple."},
    {"role": "user", "content": "Which word?"},
    {"role": "assistant", "content": "apple"},
]


@pytest.fixture(scope="module")
def tokenizer():
    texts = ["the quick brown fox jumps over the lazy dog", "remember the word apple", "which word"] * 20
    return train_bpe(texts, 300)


def test_multi_turn_dialogue_splits_into_one_example_per_assistant_turn() -> None:
    pairs = split_turns(DIALOGUE)
    assert [answer for _, answer in pairs] == ["I will remember apple.", "apple"]
    assert pairs[0][0] == DIALOGUE[:2] and pairs[1][0] == DIALOGUE[:4]  # the earlier turns are the prompt
    assert split_turns([{"role": "assistant", "content": "hi"}]) == []  # no user turn before it: no example


def test_llada_template_round_trip_and_layout(tokenizer) -> None:
    template = load_template("llada", tokenizer, eos_id=0)
    assert all(tokenizer.token_to_id(m) is not None for m in LLADA_MARKERS)  # added as special tokens
    text = template.render(DIALOGUE)
    assert template.parse(text) == DIALOGUE
    assert tokenizer.decode(template.encode(text), skip_special_tokens=False) == text  # lossless in ids too
    prompt = template.prompt_text(DIALOGUE[:2])
    # LLaDA-8B-Instruct's chat_template: BOS, then header(role) + "\n\n" + content + <|eot_id|> per turn
    assert prompt == (
        "<|endoftext|>"
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nRemember the word apple.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    answer = template.encode_answer(DIALOGUE[:2], "I will remember apple.")
    assert answer[-1] == 0 and 0 not in answer[:-1]  # ends with one EOS (the padding EOS come per batch)
    assert tokenizer.decode(answer[:-1]) == "I will remember apple."
    ids = template.encode_prompt(DIALOGUE[:2])
    for marker in (START_HEADER, EOT):  # each marker is one token
        assert ids.count(tokenizer.token_to_id(marker)) == (3 if marker == START_HEADER else 2)


def test_a_jinja_chat_template_from_tokenizer_config(tmp_path: Path, tokenizer) -> None:
    source = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": source}))
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    template = load_template("tokenizer", tokenizer, 0, tmp_path / "tokenizer.json")
    msgs = DIALOGUE[1:2]
    assert template.prompt_text(msgs) == "<user>Remember the word apple.</user><assistant>"
    assert template.answer_text(msgs, "ok") == "ok</assistant><|endoftext|>"  # the answer's end marker, then EOS


def test_bad_templates_are_one_line_errors(tmp_path: Path, tokenizer) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_template(str(tmp_path / "missing.jinja"), tokenizer, 0)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "x"}))
    with pytest.raises(ConfigError, match="no chat_template"):
        load_template("tokenizer", tokenizer, 0, tmp_path / "tokenizer.json")
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}")
    template = load_template(str(bad), tokenizer, 0)
    with pytest.raises(ConfigError, match="fails to render"):
        template.prompt_text(DIALOGUE[1:2])


def test_parse_refuses_text_outside_the_layout(tokenizer) -> None:
    template = ChatTemplate(tokenizer, 0)
    with pytest.raises(ValueError, match="not a turn"):
        template.parse("<|endoftext|>hello<|eot_id|>")
