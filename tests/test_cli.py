"""`llada` never shows a traceback: each failure is one line on stderr and an exit code (--debug shows it)."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import lightning  # noqa: F401  (imported here: its log handler binds pytest's stderr, not one test's capsys)
import pytest
import torch

from llada_lightning import cli
from llada_lightning.config.compose import compose, to_yaml
from llada_lightning.config.errors import ConfigError
from llada_lightning.data.tokenizer import train_bpe

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


def _failing_ladder(monkeypatch, exc: BaseException) -> None:
    """Make `llada ladder` raise `exc`."""

    def ladder(args) -> int:
        raise exc

    monkeypatch.setattr(cli, "_cmd_ladder", ladder)


def _llada_lines(err: str) -> list[str]:
    """The lines `llada` itself printed on stderr (libraries may log too); never a traceback."""
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("llada:")]


def test_a_closed_stdout_ends_quietly_with_141() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llada_lightning.cli", "ladder"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the command writes anything (`llada ladder | head -0`)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err.decode() == ""


def test_an_os_error_is_one_line_naming_the_file(monkeypatch, capsys) -> None:
    _failing_ladder(monkeypatch, PermissionError(errno.EACCES, "Permission denied", "/runs/x/result.json"))
    assert cli.main(["ladder"]) == 1
    assert capsys.readouterr().err == "llada: /runs/x/result.json: Permission denied\n"
    _failing_ladder(monkeypatch, OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"))
    assert cli.main(["ladder"]) == 1
    assert capsys.readouterr().err == "llada: /a -> /b: Invalid cross-device link\n"


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys) -> None:
    _failing_ladder(monkeypatch, RuntimeError("something broke\nsecond line"))
    assert cli.main(["ladder"]) == 1
    assert capsys.readouterr().err == (
        "llada: internal error: RuntimeError: something broke (rerun with --debug for the traceback)\n"
    )
    with pytest.raises(RuntimeError, match="something broke"):
        cli.main(["--debug", "ladder"])
    _failing_ladder(monkeypatch, OSError(errno.ENOSPC, "No space left on device", "/x"))
    with pytest.raises(OSError):
        cli.main(["--debug", "ladder"])


def test_interrupt_exits_130_quietly(monkeypatch, capsys) -> None:
    _failing_ladder(monkeypatch, KeyboardInterrupt())
    assert cli.main(["ladder"]) == 130
    assert capsys.readouterr().err == ""


def test_config_and_non_finite_errors_keep_their_exit_codes(monkeypatch, capsys) -> None:
    _failing_ladder(monkeypatch, ConfigError("model.x=1 is bad; set model.x=2"))
    assert cli.main(["ladder"]) == 2
    assert capsys.readouterr().err == "llada: config error: model.x=1 is bad; set model.x=2\n"
    _failing_ladder(monkeypatch, FloatingPointError("non-finite loss; resume it with a lower train.lr"))
    assert cli.main(["ladder"]) == 3
    assert capsys.readouterr().err == "llada: non-finite loss; resume it with a lower train.lr\n"


def test_train_with_a_tokenizer_file_that_is_not_json(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli.main(["train", *TINY, f"data.tokenizer={bad}", f"runs_root={tmp_path / 'runs'}"]) == 2
    (line,) = _llada_lines(capsys.readouterr().err)
    assert line.startswith(f"llada: config error: data.tokenizer='{bad}': not a readable tokenizer.json (")
    assert line.endswith(
        "set data.tokenizer to the path of a HF tokenizer.json, or to 'bpe' to train one on the corpus"
    )


def _hand_made_run(run_dir: Path, checkpoint: bytes, tokenizer: str | None) -> Path:
    """A run directory as `llada train` writes it, with the given checkpoint bytes and tokenizer.json text."""
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(compose([*TINY, f"run_dir={run_dir}"])))
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(checkpoint)
    if tokenizer is None:
        train_bpe(["to be or not to be, that is the question"] * 20, 300).save(str(run_dir / "tokenizer.json"))
    else:
        (run_dir / "tokenizer.json").write_text(tokenizer)
    return run_dir


def test_sample_with_a_tokenizer_file_that_is_not_json(tmp_path: Path, capsys) -> None:
    run = _hand_made_run(tmp_path / "run", b"", "{not json")
    assert cli.main(["sample", str(run), "--prompt", "hi"]) == 2
    (line,) = _llada_lines(capsys.readouterr().err)
    assert line.startswith(f"llada: config error: {run / 'tokenizer.json'}: not a readable tokenizer.json (")
    assert line.endswith("; restore the tokenizer.json this run was trained with")
    assert (run / "tokenizer.json").read_text() == "{not json"


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut short"])
def test_sample_with_an_empty_or_truncated_checkpoint(tmp_path: Path, capsys, content: bytes) -> None:
    run = _hand_made_run(tmp_path / "run", content, None)
    assert cli.main(["sample", str(run), "--prompt", "hi"]) == 2
    (line,) = _llada_lines(capsys.readouterr().err)
    ckpt = run / "checkpoints" / "last.ckpt"
    assert line.startswith(f"llada: config error: {ckpt}: ") and "restore it or retrain the run" in line
    assert ckpt.read_bytes() == content


@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_a_gpu_accelerator_without_a_gpu_is_one_line_before_any_work(
    tmp_path: Path, capsys, monkeypatch, accelerator: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run_dir = tmp_path / "run"
    assert cli.main(["train", *TINY, f"train.accelerator={accelerator}", f"run_dir={run_dir}"]) == 2
    (line,) = _llada_lines(capsys.readouterr().err)
    assert line.startswith(f"llada: config error: train.accelerator={accelerator} but no GPU is visible")
    assert line.endswith("; use train.accelerator=cpu or auto")
    assert not run_dir.exists()


def test_disk_full_while_checkpointing_is_one_line_and_leaves_no_temporary_file(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    assert cli.main(["train", *TINY, f"run_dir={tmp_path}"]) == 1
    (line,) = _llada_lines(capsys.readouterr().err)
    assert line == (
        f"llada: {tmp_path / 'checkpoints'}: cannot save a checkpoint (No space left on device); free space there "
        "and rerun the same command (no earlier checkpoint exists)"
    )
    assert list((tmp_path / "checkpoints").iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["ladder", "--seq-len", "0"], "--seq-len 0 must be >= 1"),
        (["ladder", "--prefix", "gpt-"], "--prefix 'gpt-' matches no ladder size; use one of: cpu-, llada-, smdm-"),
    ],
)
def test_ladder_refuses_a_meaningless_table(argv: list[str], expected: str, capsys) -> None:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1 and err[0].startswith(f"llada: config error: {expected}")


@pytest.mark.parametrize("argv", [["train", "--unknown-flag"], ["nonsense"], ["sweep", "launch"]])
def test_argument_errors_are_one_line_without_the_usage_block(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and err[0].startswith("llada: error: ") and "--help" in err[0]


def test_llada_configs_pointing_nowhere_is_named(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("LLADA_CONFIGS", str(tmp_path / "nowhere"))
    assert cli.main(["config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LLADA_CONFIGS=" in err[0] and "no such directory" in err[0]


def test_building_the_parser_imports_no_torch() -> None:
    """`llada --help` and `llada config` stay fast: no subcommand's registration imports torch or Lightning."""
    code = (
        "import sys; from llada_lightning.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('torch', 'lightning', 'transformers', 'safetensors') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
