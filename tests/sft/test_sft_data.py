"""SFT data: records from JSONL, EOS padding, the split by conversation, the cache, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llada_lightning.config.compose import compose
from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import SFTConfig
from llada_lightning.sft.dataset import pad_batch, prepare_sft_corpus
from llada_lightning.sft.instructions import instruction_set
from llada_lightning.sft.records import iter_conversations, write_jsonl


def test_pad_batch_right_pads_with_eos_and_keeps_prompt_lengths() -> None:
    items = [(torch.tensor([5, 6, 7, 0]), 2), (torch.tensor([5, 8, 0]), 1)]
    batch = pad_batch(items, eos_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [5, 8, 0, 0]]
    assert batch["prompt_lengths"].tolist() == [2, 1]
    assert batch["answer_lengths"].tolist() == [2, 2]  # own answer incl. its EOS, not the padding


def test_jsonl_records_messages_and_prompt_response(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    path.write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
        + "\n\n"
        + json.dumps({"prompt": "a", "response": "b", "system": "s"})
        + "\n"
    )
    convs = list(iter_conversations(SFTConfig(source="jsonl", data_files=[str(path)])))
    assert convs[0] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert [m["role"] for m in convs[1]] == ["system", "user", "assistant"]
    assert convs[1][2]["content"] == "b"


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("{not json", r"chat.jsonl:2: not valid JSON"),
        ('{"text": "x"}', r"chat.jsonl:2: the record has neither 'messages'"),
        ('{"messages": [{"role": "robot", "content": "x"}]}', r"chat.jsonl:2: message 0 must be"),
        ('{"messages": []}', r"non-empty list"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path: Path, line: str, match: str) -> None:
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n" + line + "\n")
    with pytest.raises(ConfigError, match=match):
        list(iter_conversations(SFTConfig(source="jsonl", data_files=[str(path)])))


def test_instruction_set_is_deterministic_and_varied() -> None:
    a, b = instruction_set(60), instruction_set(60)
    assert a == b
    assert len({json.dumps(c) for c in a}) > 50
    assert any(len(c) == 4 for c in a)  # multi-turn dialogues are in it


def _sft(parent: Path, tmp_path: Path, *extra: str):
    return compose([f"sft.parent={parent}", f"runs_root={tmp_path}", *extra])


def test_split_is_by_conversation_and_the_cache_is_reused(parents, tmp_path: Path) -> None:
    convs = instruction_set(300)
    path = tmp_path / "chat.jsonl"
    write_jsonl(str(path), convs)
    cfg = _sft(parents["llada"], tmp_path, "sft.source=jsonl", f"sft.data_files=[{path}]", "data.seq_len=96")
    corpus = prepare_sft_corpus(cfg)
    assert corpus.meta["dropped"] == 0
    assert corpus.meta["splits"]["train"]["n_examples"] + corpus.meta["splits"]["val"]["n_examples"] == sum(
        sum(m["role"] == "assistant" for m in c) for c in convs
    )
    # the two turns of a dialogue share a prompt prefix: both land in the same split
    val_prompts = {tuple(corpus.val[i][0][: corpus.val[i][1]].tolist()) for i in range(len(corpus.val))}
    train_prompts = {tuple(corpus.train[i][0][: corpus.train[i][1]].tolist()) for i in range(len(corpus.train))}
    multi = [p for p in val_prompts if any(q[: len(p)] == p and len(q) > len(p) for q in val_prompts | train_prompts)]
    for p in multi:
        assert not any(q[: len(p)] == p and len(q) > len(p) for q in train_prompts)
    built = (corpus.directory / "meta.json").stat().st_mtime_ns
    again = prepare_sft_corpus(cfg)
    assert again.directory == corpus.directory and (again.directory / "meta.json").stat().st_mtime_ns == built


def test_examples_longer_than_seq_len_are_dropped_and_none_left_is_an_error(parents, tmp_path: Path) -> None:
    kept = prepare_sft_corpus(_sft(parents["llada"], tmp_path, "data.seq_len=40", "sft.instructions=200"))
    assert kept.meta["dropped"] > 0
    assert int(kept.train.lengths.max()) <= 40
    with pytest.raises(ConfigError, match="no training example of at most data.seq_len=8"):
        prepare_sft_corpus(_sft(parents["llada"], tmp_path, "data.seq_len=8", "sft.instructions=200"))


def test_bad_sft_configs_fail_at_compose_time(parents, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sft.parent=.*no such run directory"):
        _sft(tmp_path / "nope", tmp_path)
    with pytest.raises(ConfigError, match="sft.source='web' is not one of"):
        _sft(parents["arm"], tmp_path, "sft.source=web")
    with pytest.raises(ConfigError, match="objective.sft_normalization='mean' is not one of"):
        _sft(parents["arm"], tmp_path, "objective.sft_normalization=mean")
    with pytest.raises(ConfigError, match="sft.source=jsonl needs sft.data_files"):
        _sft(parents["arm"], tmp_path, "sft.source=jsonl")
    empty = tmp_path / "empty-run"
    empty.mkdir()
    with pytest.raises(ConfigError, match="has no config.yaml"):
        _sft(empty, tmp_path)


def test_sft_config_inherits_the_parent_and_grows_the_vocabulary(parents, tmp_path: Path) -> None:
    from llada_lightning.config.compose import load_run_config

    parent = load_run_config(parents["arm"] / "config.yaml")
    cfg = _sft(parents["arm"], tmp_path)
    assert cfg.objective.name == "arm" and cfg.model.n_layers == parent.model.n_layers
    assert cfg.model.vocab_size == parent.model.vocab_size + 3  # LLaDA's three chat markers
    assert cfg.train.lr_schedule == "wsd" and cfg.train.decay_fraction == 0.1  # LLaDA's SFT schedule
    assert cfg.sft.parent == str(parents["arm"])


def test_a_datasets_source_reads_the_same_conversations(tmp_path: Path) -> None:
    """sft.source=hf with the `json` builder on a local file (offline) gives what the JSONL reader gives."""
    convs = instruction_set(12)
    path = tmp_path / "chat.jsonl"
    write_jsonl(str(path), convs)
    hf = list(iter_conversations(SFTConfig(source="hf", path="json", data_files=[str(path)])))
    assert hf == convs == list(iter_conversations(SFTConfig(source="jsonl", data_files=[str(path)])))
    with pytest.raises(ConfigError, match="sft.path='json'"):
        list(iter_conversations(SFTConfig(source="hf", path="json", data_files=[str(tmp_path / "missing.jsonl")])))
