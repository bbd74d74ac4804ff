"""Fixtures for the data tests: an offline `datasets`, and the embedded corpus tokenised once per session."""

from __future__ import annotations

import os

import pytest

from llada_lightning.config.schema import DataConfig

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def hf_offline(tmp_path, monkeypatch):
    """`datasets` offline, with its own cache under tmp_path (never the user's home)."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")
    return tmp_path


@pytest.fixture(scope="session")
def embedded_cfg(tmp_path_factory) -> DataConfig:
    """The full embedded corpus at vocab 4096 (the default run's data), cached under a session tmp dir."""
    return DataConfig(vocab_size=4096, seq_len=128, cache_dir=str(tmp_path_factory.mktemp("llada_cache")))


@pytest.fixture(scope="session")
def embedded_corpus(embedded_cfg):
    from llada_lightning.data.cache import prepare_corpus

    return prepare_corpus(embedded_cfg)
