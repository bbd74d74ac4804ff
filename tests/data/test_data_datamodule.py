"""LMDataModule: reproducible batches, a fixed validation set, sharding, and resume through a real Trainer."""

from __future__ import annotations

from dataclasses import replace
from itertools import islice
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import DataConfig
from llada_lightning.data.datamodule import LMDataModule


def make_dm(cfg, **kw) -> LMDataModule:
    args = {"batch_size": 4, "seed": 0, "val_batches": 3} | kw
    dm = LMDataModule(cfg, **args)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def first_batches(loader, n: int) -> list[torch.Tensor]:
    return list(islice(iter(loader), n))


def test_attributes(embedded_cfg, embedded_corpus):
    dm = LMDataModule(embedded_cfg, batch_size=4, seed=0, val_batches=3)
    assert dm.vocab_size == 4096  # available before setup
    with pytest.raises(RuntimeError, match="setup"):
        dm.train_dataloader()
    dm.setup("fit")
    assert dm.corpus.directory == embedded_corpus.directory
    assert dm.eos_id == 0 and dm.tokenizer_path.is_file()
    assert dm.bytes_per_token("val") == embedded_corpus.bytes_per_token("val")
    assert dm.train_blocks == len(embedded_corpus.train) // 128
    assert dm.samples_consumed_to_epochs(dm.train_blocks * 3) == 3.0
    assert dm.consumed_samples() == 0


def test_same_config_and_seed_give_the_same_batches(embedded_cfg):
    a = first_batches(make_dm(embedded_cfg).train_dataloader(), 5)
    b = first_batches(make_dm(embedded_cfg).train_dataloader(), 5)
    c = first_batches(make_dm(embedded_cfg, seed=1).train_dataloader(), 5)
    assert all(x.dtype == torch.long and x.shape == (4, 128) for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    assert int(max(x.max() for x in a)) < 4096


def test_val_loader_is_fixed_and_in_order(embedded_cfg, embedded_corpus):
    dm = make_dm(embedded_cfg)
    first, second = list(dm.val_dataloader()), list(dm.val_dataloader())
    assert len(first) == 3 and all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    expected = np.asarray(embedded_corpus.val[: 3 * 4 * 128], dtype=np.int64).reshape(3, 4, 128)
    np.testing.assert_array_equal(torch.stack(first).numpy(), expected)


def test_val_loader_takes_all_blocks_when_there_are_fewer(embedded_cfg, embedded_corpus):
    dm = make_dm(embedded_cfg, val_batches=10_000)
    n_val = len(embedded_corpus.val) // 128
    assert sum(len(x) for x in dm.val_dataloader()) == n_val


def test_val_split_shorter_than_a_block_is_an_error(embedded_cfg, embedded_corpus):
    cfg = replace(embedded_cfg, seq_len=len(embedded_corpus.val) + 1)
    n_val = len(embedded_corpus.val)
    with pytest.raises(
        ConfigError,
        match=f"^the validation split has {n_val} tokens, fewer than one block of data.seq_len={n_val + 1}; "
        "lower data.seq_len or raise data.val_fraction$",
    ):
        make_dm(cfg)


def test_a_corpus_too_small_for_one_training_block_names_the_keys(tmp_path, hf_offline):
    data = tmp_path / "tiny.txt"
    data.write_text("".join(f"line {i}\n" for i in range(20)))
    cfg = DataConfig(source="hf", path="text", data_files=[str(data)], vocab_size=300, seq_len=512,
                     cache_dir=str(tmp_path / "cache"))  # fmt: skip
    dm = LMDataModule(cfg, batch_size=4, seed=0, val_batches=3)
    with pytest.raises(ConfigError, match=r"^the training split has \d+ tokens, fewer than one block of "
                       r"data.seq_len=512; lower data.seq_len or use more data \(data.data_files, "
                       r"data.max_documents\)$"):  # fmt: skip
        dm.setup("fit")
    assert dm.corpus is None  # a failed setup keeps nothing half set


def test_ranks_shard_validation_and_training(embedded_cfg):
    dm = make_dm(embedded_cfg, val_batches=5, batch_size=3)  # 15 blocks over 2 ranks: 8 + 7
    single = torch.cat(list(dm.val_dataloader()))
    single_train = torch.cat(first_batches(make_dm(embedded_cfg, batch_size=6).train_dataloader(), 4))
    val, train = [], []
    for r in range(2):
        dm.trainer = SimpleNamespace(global_rank=r, world_size=2, global_step=0)
        val.append(torch.cat(list(dm.val_dataloader())))
        train.append(first_batches(dm.train_dataloader(), 4))
    assert len(val[0]) + len(val[1]) == len(single) == 15
    got = {tuple(x.tolist()) for v in val for x in v}
    assert got == {tuple(x.tolist()) for x in single}
    # Micro-batch i of the job (6 sequences) is rank 0's 3 then rank 1's 3.
    assert torch.equal(torch.cat([torch.cat([train[0][i], train[1][i]]) for i in range(4)]), single_train)


def test_training_stream_resumes_from_the_global_step(embedded_cfg):
    dm = make_dm(embedded_cfg, accumulate_grad_batches=2)
    fresh = torch.cat(first_batches(dm.train_dataloader(), 10))
    dm.trainer = SimpleNamespace(global_rank=0, world_size=1, global_step=3)  # 3 steps * 2 micro * 4
    assert dm.consumed_samples() == 24
    resumed = torch.cat(first_batches(dm.train_dataloader(), 4))
    assert torch.equal(resumed, fresh[24:40])


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_resume_through_a_lightning_trainer(embedded_cfg, tmp_path):
    """A run restored from a step-2 checkpoint reads exactly the batches of an uninterrupted run."""
    import lightning as L

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Embedding(4096, 1)
            self.seen: list[torch.Tensor] = []

        def training_step(self, batch, _):
            self.seen.append(batch.clone())
            return self.w(batch).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def fit(max_steps, ckpt_path=None, callbacks=()):
        model = Recorder()
        trainer = L.Trainer(
            max_steps=max_steps, accumulate_grad_batches=2, accelerator="cpu", devices=1, logger=False,
            enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
            limit_val_batches=0, callbacks=list(callbacks), default_root_dir=tmp_path,
            enable_checkpointing=bool(callbacks),
        )  # fmt: skip
        dm = LMDataModule(embedded_cfg, batch_size=2, seed=7, val_batches=1, accumulate_grad_batches=2)
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return model.seen

    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)
    full = fit(4, callbacks=[ckpt])
    assert len(full) == 8  # 4 optimizer steps x 2 micro-batches
    resumed = fit(4, ckpt_path=str(next((tmp_path / "ckpt").glob("*step=2*.ckpt"))))
    assert len(resumed) == 4
    assert all(torch.equal(x, y) for x, y in zip(resumed, full[4:], strict=True))


# ---- data.unique_tokens: a fixed, nested subset repeated for as many epochs as a run needs --------------------


def _blocks_of(dm: LMDataModule) -> set[bytes]:
    """The distinct training blocks a data module draws from, as bytes."""
    return {dm.train_dataset[i].numpy().tobytes() for i in range(len(dm.train_dataset))}


def test_unique_tokens_draws_exactly_u_tokens_repeated_each_epoch_in_a_fresh_order(embedded_cfg, embedded_corpus):
    u_blocks = 12  # 3 batches of 4 blocks: an epoch every 3 batches
    dm = make_dm(replace(embedded_cfg, unique_tokens=u_blocks * 128))
    assert dm.train_blocks == u_blocks and dm.unique_tokens == u_blocks * 128
    batches = first_batches(dm.train_dataloader(), 9)  # 3 epochs
    rows = [b.numpy().tobytes() for batch in batches for b in batch]
    epochs = [rows[i : i + u_blocks] for i in range(0, len(rows), u_blocks)]
    subset = _blocks_of(dm)
    full = {
        np.asarray(embedded_corpus.train[i * 128 : (i + 1) * 128], dtype=np.int64).tobytes()
        for i in range(len(embedded_corpus.train) // 128)
    }
    assert subset <= full and len(subset) == u_blocks  # whole training blocks, no two alike
    for epoch in epochs:  # every epoch reads each block of the subset exactly once...
        assert sorted(epoch) == sorted(subset)
    assert epochs[0] != epochs[1] != epochs[2]  # ...each in its own order
    assert dm.samples_consumed_to_epochs(len(rows)) == 3.0


def test_unique_token_subsets_are_nested_seeded_and_shared_by_every_objective(embedded_cfg):
    small = _blocks_of(make_dm(replace(embedded_cfg, unique_tokens=8 * 128)))
    large_dm = make_dm(replace(embedded_cfg, unique_tokens=40 * 128))
    large = _blocks_of(large_dm)
    assert small < large  # a smaller U is a prefix of a larger one
    prefix = [large_dm.train_dataset[i].numpy().tobytes() for i in range(8)]
    assert set(prefix) == small
    # one subset per seed, whatever else differs (the data module does not know the objective or the model)
    assert _blocks_of(make_dm(replace(embedded_cfg, unique_tokens=8 * 128), batch_size=2)) == small
    assert _blocks_of(make_dm(replace(embedded_cfg, unique_tokens=8 * 128), seed=1)) != small


def test_no_unique_tokens_reads_the_whole_split_as_before(embedded_cfg, embedded_corpus):
    dm = make_dm(embedded_cfg)
    assert dm.unique_tokens == len(embedded_corpus.train) // 128 * 128
    first = first_batches(dm.train_dataloader(), 1)[0]
    perm = np.random.default_rng([0, 0]).permutation(len(embedded_corpus.train) // 128)  # blocks.py's epoch order
    expected = [np.asarray(embedded_corpus.train[i * 128 : (i + 1) * 128], dtype=np.int64) for i in perm[:4]]
    np.testing.assert_array_equal(first.numpy(), np.stack(expected))


def test_unique_tokens_beyond_the_training_split_is_one_clear_error(embedded_cfg, embedded_corpus):
    available = len(embedded_corpus.train) // 128 * 128
    dm = LMDataModule(replace(embedded_cfg, unique_tokens=available + 128), batch_size=4, seed=0, val_batches=3)
    with pytest.raises(ConfigError, match=rf"unique_tokens={available + 128} exceeds the training split \({available}"):
        dm.setup("fit")
    assert dm.train_dataset is None  # nothing kept from the failed set-up
    assert make_dm(replace(embedded_cfg, unique_tokens=available)).train_blocks == available // 128


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.unique_tokens=1000", r"smaller than one batch .*16 x data.seq_len=64 = 1024 tokens"),
        ("data.unique_tokens=1100", r"not a whole number of data.seq_len=64-token blocks; use 1088 or 1152"),
        ("data.unique_tokens=0", r"data.unique_tokens=0 must be > 0"),
    ],
)
def test_unique_tokens_is_checked_with_the_config(override, message):
    from llada_lightning.config.compose import compose

    base = ["data.seq_len=64", "train.batch_size=16"]
    with pytest.raises(ConfigError, match=message):
        compose([*base, override])
    assert compose([*base, "data.unique_tokens=1088"]).data.unique_tokens == 1088
