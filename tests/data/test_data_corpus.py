"""Document sources: the embedded corpus offline, local `datasets` files, errors, and the document split."""

from __future__ import annotations

import json
import re

import pytest

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import DataConfig
from llada_lightning.data.cache import assign_splits
from llada_lightning.data.corpus import iter_documents, iter_embedded_works, split_paragraphs


@pytest.fixture(scope="module")
def embedded_docs() -> list[str]:
    return list(iter_documents(DataConfig()))


def test_embedded_corpus_is_real_english_in_many_documents(embedded_docs):
    works = list(iter_embedded_works())
    assert len(works) == 42
    assert 300 <= len(embedded_docs) <= 2000
    assert all(d.strip() for d in embedded_docs)
    assert sum("thee" in d for d in embedded_docs) > 100
    assert any("Hamlet" in d for d in embedded_docs)
    # Cutting at paragraph breaks loses nothing but blank lines.
    squash = lambda s: re.sub(r"\s+", " ", s).strip()  # noqa: E731
    assert squash(" ".join(embedded_docs)) == squash(" ".join(t for _, t in works))


def test_embedded_corpus_is_deterministic_and_capped(embedded_docs):
    assert list(iter_documents(DataConfig(max_documents=25))) == embedded_docs[:25]


def test_split_paragraphs_cuts_at_blank_lines_near_the_target():
    paras = [f"paragraph {i} " + " ".join(["word"] * 30) for i in range(40)]
    text = "\n\n".join(paras)
    pieces = split_paragraphs(text, target_chars=500)
    assert len(pieces) > 5
    assert "\n\n".join(pieces) == text
    assert all(len(p) >= 250 for p in pieces)
    assert all(not p.startswith("\n") and not p.endswith("\n") for p in pieces)


def test_split_by_document_is_deterministic_disjoint_and_never_empty(embedded_docs):
    is_val = assign_splits(embedded_docs, 0.05)
    assert is_val == assign_splits(embedded_docs, 0.05)
    n_val = sum(is_val)
    assert 10 <= n_val <= 60  # about 5% of ~600
    # The split depends on a document's text only: fewer documents keep their assignment.
    assert assign_splits(embedded_docs[:100], 0.05) == is_val[:100]
    # Identical documents land on the same side, so no text is in both splits.
    docs = embedded_docs[:50] + embedded_docs[:50]
    both = assign_splits(docs, 0.3)
    assert both[:50] == both[50:]
    val_texts = {d for d, v in zip(docs, both, strict=True) if v}
    train_texts = {d for d, v in zip(docs, both, strict=True) if not v}
    assert val_texts and not (val_texts & train_texts)


def test_split_keeps_one_validation_document_and_one_training_document():
    assert sum(assign_splits(["a", "b", "c"], 1e-9)) == 1
    with pytest.raises(ConfigError, match="no training document.*use more documents .*or lower data.val_fraction"):
        assign_splits(["only one"], 0.05)
    with pytest.raises(ConfigError, match="data.val_fraction=0.0 is outside"):
        assign_splits(["a", "b"], 0.0)


def test_hf_source_reads_local_text_and_json_files(hf_offline):
    txt = hf_offline / "a.txt"
    txt.write_text("first line\n\nsecond line é\n   \nthird\n", encoding="utf-8")
    cfg = DataConfig(source="hf", path="text", data_files=[str(txt)])
    assert list(iter_documents(cfg)) == ["first line", "second line é", "third"]

    jl = hf_offline / "b.jsonl"
    jl.write_text("".join(json.dumps({"body": f"doc {i}", "id": i}) + "\n" for i in range(7)))
    cfg = DataConfig(source="hf", path="json", data_files=[str(jl)], text_field="body", max_documents=5)
    assert list(iter_documents(cfg)) == [f"doc {i}" for i in range(5)]


def test_source_errors(hf_offline):
    with pytest.raises(ValueError, match="unknown data.source"):
        iter_documents(DataConfig(source="nope"))  # raised at the call, before any iteration
    with pytest.raises(ValueError, match="data.path"):
        iter_documents(DataConfig(source="hf"))
    with pytest.raises(ValueError, match="max_documents"):
        iter_documents(DataConfig(max_documents=0))
    jl = hf_offline / "c.jsonl"
    jl.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(ConfigError, match=r"text_field='text'.*\['body'\]; set data.text_field"):
        iter_documents(DataConfig(source="hf", path="json", data_files=[str(jl)]))
    blank = hf_offline / "blank.txt"
    blank.write_text("\n  \n\n")
    with pytest.raises(ConfigError, match="empty"):
        list(iter_documents(DataConfig(source="hf", path="text", data_files=[str(blank)])))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert isinstance(exc.value, ConfigError) and "\n" not in message
    return message


def test_a_missing_data_file_names_data_files(hf_offline):
    missing = hf_offline / "missing.txt"
    with pytest.raises(ConfigError) as exc:
        iter_documents(DataConfig(source="hf", path="text", data_files=[str(missing)]))
    message = _one_line(exc)
    assert message.startswith(f"data.data_files=['{missing}']: ") and str(missing) in message
    assert "give existing files (or globs) for data.path='text'" in message


def test_records_without_the_text_field_name_data_text_field(hf_offline):
    jl = hf_offline / "mixed.jsonl"
    jl.write_text(json.dumps({"text": "a document"}) + "\n" + json.dumps({"body": "no text here"}) + "\n")
    with pytest.raises(ConfigError) as exc:
        list(iter_documents(DataConfig(source="hf", path="json", data_files=[str(jl)])))
    message = _one_line(exc)
    assert message.startswith("data.text_field='text' must hold strings, found NoneType")
    assert message.endswith("set data.text_field to a text column present in every record")


def test_a_file_the_builder_cannot_parse_names_the_files_and_the_builder(hf_offline):
    bad = hf_offline / "bad.jsonl"
    bad.write_text('{"text": \n')
    with pytest.raises(ConfigError) as exc:
        iter_documents(DataConfig(source="hf", path="json", data_files=[str(bad)]))
    message = _one_line(exc)
    assert message.startswith(f"data.path='json' cannot read data.data_files=['{bad}'] (")
    assert "set data.path to the builder of their format" in message


def test_a_split_the_files_lack_names_data_split(hf_offline):
    txt = hf_offline / "a.txt"
    txt.write_text("one\ntwo\n")
    with pytest.raises(ConfigError) as exc:
        iter_documents(DataConfig(source="hf", path="text", data_files=[str(txt)], split="validation"))
    assert "data.split='validation'" in _one_line(exc) and "set data.name / data.split" in str(exc.value)


def test_an_unreachable_hub_dataset_names_data_path(hf_offline):
    with pytest.raises(ConfigError) as exc:
        iter_documents(DataConfig(source="hf", path="no-such-user/no-such-dataset"))
    message = _one_line(exc)
    assert message.startswith("data.path='no-such-user/no-such-dataset': ")
    assert "or data.path=text|json with local data.data_files" in message
