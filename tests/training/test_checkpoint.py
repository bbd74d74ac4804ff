"""AtomicCheckpoint: a failed save leaves no temporary file and keeps the previous checkpoint; bad ones are one line."""

from __future__ import annotations

import errno
import os
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from llada_lightning.config.compose import compose
from llada_lightning.config.errors import ConfigError
from llada_lightning.training.checkpoint import (
    LAST,
    TMP,
    AtomicCheckpoint,
    check_readable,
    recover_checkpoint,
    replace_checkpoint,
)
from llada_lightning.training.progress import checkpoint_step
from llada_lightning.training.run import train

TINY = [
    "objective=arm",
    "model=cpu-0.1m",
    "data.max_documents=40",
    "data.seq_len=32",
    "train.batch_size=4",
    "train.max_steps=2",
    "train.val_batches=1",
    "train.progress_bar=false",
]


def _trainer(save) -> SimpleNamespace:
    """The parts of a Trainer that AtomicCheckpoint.save uses, rank 0 of one."""
    return SimpleNamespace(
        save_checkpoint=save, is_global_zero=True, global_step=7, strategy=SimpleNamespace(barrier=lambda name: None)
    )


def _disk_full(path, weights_only=False) -> None:
    Path(path).write_bytes(b"half a checkpoint")  # what a write that ran out of space leaves
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_removes_the_temporary_file_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    ckpt = AtomicCheckpoint(tmp_path / "checkpoints", every_n_steps=1)
    ckpt.dirpath.mkdir()
    ckpt.last_path.write_bytes(b"the previous checkpoint")
    with pytest.raises(OSError) as info:
        ckpt.save(_trainer(_disk_full))
    exc = info.value
    assert exc.errno == errno.ENOSPC and exc.filename == str(ckpt.dirpath)
    assert exc.strerror == (
        "cannot save a checkpoint (No space left on device); free space there and rerun the same command "
        "(the previous checkpoint last.ckpt is intact)"
    )
    assert sorted(p.name for p in ckpt.dirpath.iterdir()) == [LAST]
    assert ckpt.last_path.read_bytes() == b"the previous checkpoint"


def test_a_failed_first_save_says_there_is_no_earlier_checkpoint(tmp_path: Path) -> None:
    ckpt = AtomicCheckpoint(tmp_path / "checkpoints", every_n_steps=1)

    def denied(path, weights_only=False):
        Path(path).write_bytes(b"")
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    with pytest.raises(OSError, match=r"\(Permission denied\); fix the cause .*\(no earlier checkpoint exists\)"):
        ckpt.save(_trainer(denied))
    assert list(ckpt.dirpath.iterdir()) == []


def test_an_interrupted_save_removes_the_temporary_file_and_reraises(tmp_path: Path) -> None:
    ckpt = AtomicCheckpoint(tmp_path, every_n_steps=1)

    def interrupted(path, weights_only=False):
        Path(path).write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ckpt.save(_trainer(interrupted))
    assert not (tmp_path / TMP).exists()


def test_disk_full_through_torch_save_in_a_real_run(tmp_path: Path, monkeypatch) -> None:
    """Lightning's own save path (torch.save into a buffer) failing on the second checkpoint."""
    cfg = compose([*TINY, "train.max_steps=4", "train.ckpt_every_n_steps=2", f"run_dir={tmp_path}"])
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(OSError, match=r"cannot save a checkpoint \(No space left on device\); free space"):
        train(cfg)
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [LAST]
    assert torch.load(checkpoints / LAST, map_location="cpu", weights_only=False)["global_step"] == 2
    assert not (tmp_path / "result.json").exists()


def test_check_readable_accepts_a_torch_file_and_names_what_is_wrong(tmp_path: Path) -> None:
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, good)
    check_readable(good)
    cases = {
        "empty.ckpt": (b"", r"\(an empty file, 0 bytes\)"),
        "cut.ckpt": (good.read_bytes()[:100], r"\(100 bytes but no zip directory: truncated or foreign\)"),
    }
    foreign = tmp_path / "foreign.ckpt"
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("notes.txt", "hello")
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content)
    for path, detail in [*((tmp_path / n, d) for n, (_, d) in cases.items()), (foreign, "without data.pkl")]:
        with pytest.raises(ConfigError, match=f"^{path} is not a readable checkpoint .*{detail}.*; move it away to"):
            check_readable(path)
        assert path.is_file()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    train(compose([*TINY, f"run_dir={run_dir}"]))
    (run_dir / "result.json").unlink()  # as if killed after its last checkpoint: the next train resumes
    return run_dir


def _copy(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest)
    return dest / "checkpoints" / LAST


def _resume(run_dir: Path) -> str:
    with pytest.raises(ConfigError) as info:
        train(compose([*TINY, f"run_dir={run_dir}"]))
    return str(info.value)


def test_resume_from_an_empty_or_truncated_checkpoint_is_one_line_and_keeps_it(trained_run, tmp_path) -> None:
    for name, cut in (("empty", lambda b: b""), ("truncated", lambda b: b[: len(b) // 2])):
        ckpt = _copy(trained_run, tmp_path / name)
        ckpt.write_bytes(cut(ckpt.read_bytes()))
        before = ckpt.read_bytes()
        message = _resume(tmp_path / name)
        assert message.startswith(f"{ckpt} is not a readable checkpoint (") and "\n" not in message
        assert message.endswith("; move it away to restart this run from scratch, or restore it")
        assert ckpt.read_bytes() == before and not (tmp_path / name / "result.json").exists()


def test_resume_from_a_checkpoint_with_a_corrupt_tensor_is_one_line_and_keeps_it(trained_run, tmp_path) -> None:
    ckpt = _copy(trained_run, tmp_path / "run")
    with zipfile.ZipFile(ckpt) as z:
        tensor = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(ckpt.read_bytes())
    data[tensor.header_offset : tensor.header_offset + 4] = b"\0\0\0\0"  # its local header: the directory is whole
    ckpt.write_bytes(bytes(data))
    message = _resume(tmp_path / "run")
    assert message.startswith(f"{ckpt} is not a readable checkpoint (PytorchStreamReader failed reading file ")
    assert message.endswith("; move it away to restart this run from scratch, or restore it")
    assert ckpt.read_bytes() == bytes(data)


# -- sharded checkpoints (train.strategy=fsdp): a directory of shards, `.metadata` and Lightning's `meta.pt` --------


def _sharded(path: Path, step: int) -> Path:
    """A stand-in for a sharded checkpoint directory: what check_readable and the moves look at."""
    path.mkdir(parents=True)
    (path / ".metadata").write_bytes(b"index")
    (path / "__0_0.distcp").write_bytes(f"shard of step {step}".encode())
    torch.save({"global_step": step}, path / "meta.pt")
    return path


def _save_sharded(step: int):
    def save(path, weights_only=False):  # as ModelParallelStrategy.save_checkpoint: mkdir(exist_ok), shards, meta.pt
        Path(path).mkdir(exist_ok=True)
        (Path(path) / ".metadata").write_bytes(b"index")
        (Path(path) / "__0_0.distcp").write_bytes(f"shard of step {step}".encode())
        torch.save({"global_step": step}, Path(path) / "meta.pt")

    return save


def test_a_sharded_checkpoint_directory_replaces_the_previous_one_whole(tmp_path: Path) -> None:
    ckpt = AtomicCheckpoint(tmp_path, every_n_steps=1)
    _sharded(tmp_path / TMP, 0).joinpath("__7_0.distcp").write_bytes(b"stale shard of a killed save")
    ckpt.save(_trainer(_save_sharded(1)))
    ckpt.save(_trainer(_save_sharded(2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [LAST]  # nothing left aside, no temporary directory
    assert sorted(p.name for p in ckpt.last_path.iterdir()) == [".metadata", "__0_0.distcp", "meta.pt"]
    assert (ckpt.last_path / "__0_0.distcp").read_bytes() == b"shard of step 2"
    check_readable(ckpt.last_path)
    assert checkpoint_step(ckpt.last_path) == 2  # the resume line reads meta.pt
    # a file checkpoint (a DDP trunk's, seeded into a branch) is replaced by a directory as well
    (tmp_path / "file").mkdir()
    torch.save({"global_step": 3}, tmp_path / "file" / LAST)
    AtomicCheckpoint(tmp_path / "file", every_n_steps=1).save(_trainer(_save_sharded(4)))
    assert (tmp_path / "file" / LAST / "meta.pt").is_file()


def test_a_kill_between_the_two_renames_leaves_the_previous_checkpoint_to_recover(tmp_path: Path) -> None:
    last, tmp = _sharded(tmp_path / LAST, 1), _sharded(tmp_path / TMP, 2)
    aside = tmp_path / f".{LAST}.old"
    os.replace(last, aside)  # replace_checkpoint's first rename, then the kill
    recover_checkpoint(last)
    assert checkpoint_step(last) == 1 and not aside.exists()
    replace_checkpoint(tmp, last)
    assert checkpoint_step(last) == 2 and sorted(p.name for p in tmp_path.iterdir()) == [LAST]
    _sharded(aside, 1)  # killed after the second rename, before the old one was deleted
    recover_checkpoint(last)
    assert checkpoint_step(last) == 2 and not aside.exists()


def test_check_readable_names_what_a_sharded_checkpoint_lacks(tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "__0_0.distcp").write_bytes(b"shard")
    with pytest.raises(ConfigError, match=r"partial is not a readable checkpoint \(a directory without .metadata and "):
        check_readable(partial)
    cut = _sharded(tmp_path / "cut", 1)
    (cut / "meta.pt").write_bytes((cut / "meta.pt").read_bytes()[:50])
    with pytest.raises(ConfigError, match=r"cut is not a readable checkpoint \(its meta.pt: 50 bytes but no zip"):
        check_readable(cut)
