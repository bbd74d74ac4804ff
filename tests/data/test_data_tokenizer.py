"""The byte-level BPE, loading user tokenizers, EOS lookup and the cheap vocab-size check."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import DataConfig
from llada_lightning.data.corpus import iter_documents
from llada_lightning.data.tokenizer import eos_id, load_tokenizer, tokenizer_vocab_size, train_bpe


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return list(iter_documents(DataConfig(max_documents=30)))


def test_bpe_vocab_size_roundtrip_and_eos(texts):
    tok = train_bpe(texts, 512)
    assert tok.get_vocab_size() == 512
    assert eos_id(tok) == tok.token_to_id("<|endoftext|>") == 0
    for s in ["To be, or not to be, that is the question:", "  naïve café — “quoted” 😀\n\tend", ""]:
        ids = tok.encode(s).ids
        assert all(0 <= i < 512 for i in ids)
        assert tok.decode(ids) == s
    # Merges learned on English: common words are a single token.
    assert len(tok.encode(" the").ids) == 1
    assert len(tok.encode(" the").ids) < len(b" the")


def test_bpe_is_deterministic(texts):
    assert train_bpe(texts, 400).to_str() == train_bpe(iter(texts), 400).to_str()


def test_bpe_rejects_a_vocab_smaller_than_the_bytes(texts):
    with pytest.raises(ConfigError, match="too small.*set data.vocab_size>=257"):
        train_bpe(texts, 100)
    with pytest.raises(ConfigError, match="too small.*set data.vocab_size>=257"):
        tokenizer_vocab_size(DataConfig(vocab_size=100))


def test_tokenizer_vocab_size_is_cheap_and_reads_files(texts, tmp_path):
    assert tokenizer_vocab_size(DataConfig(vocab_size=12345)) == 12345
    path = tmp_path / "tokenizer.json"
    train_bpe(texts, 300).save(str(path))
    assert tokenizer_vocab_size(DataConfig(tokenizer=str(path))) == 300
    assert load_tokenizer(path).get_vocab_size() == 300
    with pytest.raises(ConfigError, match="data.tokenizer=.*missing.json.*no such tokenizer file; set data.tokenizer"):
        tokenizer_vocab_size(DataConfig(tokenizer=str(tmp_path / "missing.json")))


@pytest.mark.parametrize("content", ["{not json", "", '{"model": 3}'])
def test_a_tokenizer_file_that_is_not_a_tokenizer_is_one_config_line(tmp_path, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(ConfigError) as info:
        tokenizer_vocab_size(DataConfig(tokenizer=str(bad)))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"data.tokenizer='{bad}': not a readable tokenizer.json (")
    assert message.endswith(
        "; set data.tokenizer to the path of a HF tokenizer.json, or to 'bpe' to train one on the corpus"
    )
    with pytest.raises(ConfigError, match=f"^{bad}: not a readable tokenizer.json .*; restore it$"):
        load_tokenizer(bad, what=str(bad), fix="restore it")  # the inference loader names the run's file
    assert bad.read_text() == content


def _word_level(specials: list[str]) -> Tokenizer:
    vocab = {w: i for i, w in enumerate(["<unk>", "hello", "world", *specials])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def test_eos_lookup_for_user_tokenizers():
    assert eos_id(_word_level(["<pad>", "</s>"])) == 4
    assert eos_id(_word_level(["[CLS]", "[SEP]"])) == 4
    assert eos_id(_word_level(["</s>", "<my_eos>"]), "<my_eos>") == 4
    with pytest.raises(ConfigError, match="data.eos_token"):
        eos_id(_word_level(["<pad>"]))
    with pytest.raises(ConfigError, match="not in the tokenizer.*set data.eos_token"):
        eos_id(_word_level(["</s>"]), "<eot>")
