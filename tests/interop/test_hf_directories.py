"""`llada sample` and `llada eval` take a Hugging Face directory as well as a run directory: an exported run gives
the same text and scores from either; what a directory lacks is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llada_lightning.cli import main
from llada_lightning.interop import export_run


@pytest.fixture(scope="module")
def exported(llada_run_dir: Path, arm_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exported")
    return {
        "llada": export_run(llada_run_dir, root / "llada"),
        "arm": export_run(arm_run_dir, root / "arm"),
    }


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("objective", "flags"),
    [("llada", ["--steps", "8", "--temperature", "0.7", "--seed", "3"]), ("arm", ["--top-k", "5", "--seed", "3",
     "--temperature", "0.9"])],
)  # fmt: skip
def test_sample_from_the_export_equals_sample_from_the_run(
    capsys, exported, llada_run_dir, arm_run_dir, objective: str, flags: list[str]
) -> None:
    run_dir = {"llada": llada_run_dir, "arm": arm_run_dir}[objective]
    argv = ["sample", "--prompt", "ROMEO:", "--gen-length", "16", *flags]
    code_run, text_run, _ = _run(capsys, argv[0], run_dir, *argv[1:])
    code_hf, text_hf, err = _run(capsys, argv[0], exported[objective], *argv[1:])
    assert code_run == code_hf == 0, err
    assert text_hf == text_run and text_hf.startswith("ROMEO:")


@pytest.mark.parametrize("objective", ["llada", "arm"])
def test_eval_of_the_export_equals_eval_of_the_run(
    capsys, tmp_path, exported, llada_run_dir, arm_run_dir, objective: str
) -> None:
    task = tmp_path / "task.jsonl"
    examples = [
        {"context": "ROMEO:\n", "choices": [" But soft, what light", " zz qq xx", " the the the"], "gold": 0},
        {"context": "KING HENRY:\n", "choices": [" Once more unto the breach", " 12 34 56"], "gold": 0},
    ]
    task.write_text("".join(json.dumps(e) + "\n" for e in examples))
    run_dir = {"llada": llada_run_dir, "arm": arm_run_dir}[objective]
    code_run, out_run, _ = _run(capsys, "eval", run_dir, "--task", task, "--mc-num", "4", "--json")
    code_hf, out_hf, err = _run(capsys, "eval", exported[objective], "--task", task, "--mc-num", "4", "--json")
    assert code_run == code_hf == 0, err
    by_run, by_hf = json.loads(out_run), json.loads(out_hf)
    for key in ("model", "run_dir"):  # where the model came from: its directory
        del by_run[key], by_hf[key]
    assert by_hf == by_run and by_hf["num_examples"] == 2


def test_what_a_directory_lacks_is_one_line(capsys, exported, tmp_path) -> None:
    code, _, err = _run(capsys, "sample", exported["llada"], "--chat", "--prompt", "hi")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "has no chat_template" in err
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((exported["arm"] / name).read_bytes())
    code, _, err = _run(capsys, "sample", bare, "--prompt", "hi")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no tokenizer.json" in err
    code, _, err = _run(capsys, "sample", tmp_path / "nowhere", "--prompt", "hi")
    assert code == 2 and "no such directory" in err


def test_lm_eval_adapter_serves_an_export_like_the_run(exported, llada_run_dir) -> None:
    pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'llada-lightning[eval]')")
    from lm_eval.api.instance import Instance

    from llada_lightning.inference.lm_eval_adapter import LLaDALightningLM

    args = "mc_num=4,gen_length=8,steps=8,block_length=4,seed=1"
    by_run = LLaDALightningLM.create_from_arg_string(f"run_dir={llada_run_dir},{args}")
    by_hf = LLaDALightningLM.create_from_arg_string(f"run_dir={exported['llada']},{args}")
    scored = [Instance("loglikelihood", {}, ("To be, or not to be,", " that is the question"), 0, ("t", 0, 1))]
    generated = [Instance("generate_until", {}, ("ROMEO.\n", {"until": ["\n\n"]}), 0, ("t", 0, 1))]
    assert by_hf.loglikelihood(scored) == by_run.loglikelihood(scored)
    assert by_hf.generate_until(generated) == by_run.generate_until(generated)
    assert by_hf.tokenizer_name == str(exported["llada"] / "tokenizer.json")
