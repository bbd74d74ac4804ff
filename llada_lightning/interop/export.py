"""`llada export RUN_DIR OUT_DIR`: a trained run as a Hugging Face model directory.

`--format llada` (LLaDA runs) writes LLaDA-8B's layout (interop/llada.py), which `load_pretrained` reads back as
the same model bit for bit; `--format llama` (ARM runs) writes transformers' Llama layout, which
`transformers.AutoModelForCausalLM.from_pretrained(OUT_DIR)` loads with the run's logits. The other pairings are
refused: LLaDA's modeling code is bidirectional and LlamaForCausalLM causal, so either would silently run the
other model.

The directory: config.json, model.safetensors (or shards + index), generation_config.json, tokenizer.json,
tokenizer_config.json (with the chat template of a fine-tuned run), special_tokens_map.json and a README.md model
card (the run's config, data, tokens, FLOPs and validation numbers). It is written into a temporary directory
beside OUT_DIR and renamed into place, so OUT_DIR is either complete or untouched; an existing non-empty OUT_DIR is
refused unless `overwrite=True`. Files follow the user's umask.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from llada_lightning import __version__
from llada_lightning.config.errors import ConfigError
from llada_lightning.interop import llada, llama
from llada_lightning.interop.mapping import Piece
from llada_lightning.interop.weights import DEFAULT_SHARD_BYTES, write_safetensors
from llada_lightning.io import atomic_write_json, atomic_write_text, dir_mode

FORMATS = {"llada": "llada", "arm": "llama"}  # objective -> its format
# LLaDA-8B-Instruct's tokenizer_config.json chat_template: the layout `sft.chat_template=llada` trains on
LLADA_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
)


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    format: str | None = None,
    dtype: torch.dtype | str | None = None,
    overwrite: bool = False,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> Path:
    """Export `run_dir` (written by `llada train` / `llada sft`) to `out_dir`; returns `out_dir`.

    `format`: "llada" or "llama" (default: the run's objective's); `dtype`: of the saved weights (default: as
    trained, float32).
    """
    from llada_lightning.inference.loading import load_run
    from llada_lightning.interop.pretrained import _dtype

    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; choose a new OUT_DIR or pass --overwrite")
    loaded = load_run(run_dir)
    objective = loaded.objective
    fmt = format or FORMATS.get(objective)
    if fmt not in ("llada", "llama"):
        raise ConfigError(f"--format {format}: choose llada (LLaDA runs) or llama (ARM runs)")
    if FORMATS.get(objective) != fmt:
        kind = "bidirectional (LLaDA)" if objective == "llada" else "causal (an ARM)"
        raise ConfigError(
            f"{loaded.run_dir} is {kind}, and the {fmt} format's modeling code would run it as the other kind; "
            f"export it with --format {FORMATS.get(objective, '?')}"
        )
    cfg = loaded.cfg.model
    if cfg.rope_table_dtype != "float32":  # neither format's modeling code rounds its RoPE tables
        raise ConfigError(
            f"{loaded.run_dir}: model.rope_table_dtype={cfg.rope_table_dtype} (SMDM's rounded RoPE tables) has no "
            f"equivalent in the {fmt} format; only float32 tables export"
        )
    save_dtype = _dtype(dtype) or next(loaded.model.parameters()).dtype
    state = {k: v.to(save_dtype) for k, v in loaded.model.state_dict().items()}
    bos = _bos_id(loaded.tokenizer, loaded.eos_id)
    dtype_name = str(save_dtype).removeprefix("torch.")
    if fmt == "llada":
        config = llada.export_config(
            cfg,
            eos_id=loaded.eos_id,
            init=cfg.init,
            precision="amp_bf16" if "bf16" in loaded.cfg.train.precision else "fp32",
        )
        tensors = invert(llada.pieces(config, llada.model_config(config, name=cfg.name)), state, cfg.embedding_rows)
    else:
        config = llama.export_config(cfg, bos_id=bos, eos_id=loaded.eos_id, dtype=dtype_name)
        tensors = invert(llama.pieces(cfg), state, cfg.embedding_rows)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        os.chmod(tmp, dir_mode())  # mkdtemp creates 0700 whatever the umask
        atomic_write_json(tmp / "config.json", config)
        write_safetensors(tmp, tensors, max_shard_bytes)
        atomic_write_json(tmp / "generation_config.json", _generation_config(bos, loaded.eos_id))
        _write_tokenizer(tmp, loaded, bos, fmt)
        atomic_write_text(tmp / "README.md", model_card(loaded, fmt, config))
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def invert(pieces: list[Piece], state: dict[str, torch.Tensor], embedding_rows: int) -> dict[str, torch.Tensor]:
    """The checkpoint tensors of a format from the backbone's state: each piece read backwards (1:1 pieces only):
    padding rows the import appends are dropped, rows the import keeps of a larger source are padded with zeros."""
    out: dict[str, torch.Tensor] = {}
    for piece in pieces:
        if piece.source is None:
            raise AssertionError(f"cannot export {piece.target}: its format has no tensor for it")
        tensor = state[piece.target]
        if piece.pad_rows:
            tensor = tensor[: tensor.shape[0] - piece.pad_rows]
        if piece.rows is not None:
            if not (isinstance(piece.rows, tuple) and piece.rows[0] == 0):
                raise AssertionError(f"cannot export fused rows of {piece.source}")
            tensor = torch.cat((tensor, tensor.new_zeros(embedding_rows - tensor.shape[0], *tensor.shape[1:])))
        out[piece.source] = tensor
    return out


def _bos_id(tokenizer: Any, eos_id: int) -> int:
    """LLaDA's <|startoftext|> when the tokenizer has it, else the document separator (which starts documents)."""
    from llada_lightning.sft.chat import LLADA_BOS

    found = tokenizer.token_to_id(LLADA_BOS)
    return int(found) if found is not None else eos_id


def _generation_config(bos: int, eos: int) -> dict[str, Any]:
    return {"_from_model_config": True, "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": eos}


def _write_tokenizer(out: Path, loaded: Any, bos: int, fmt: str) -> None:
    """tokenizer.json (the run's), tokenizer_config.json and special_tokens_map.json for transformers'
    PreTrainedTokenizerFast; a fine-tuned run's chat template goes into tokenizer_config.json."""
    tok = loaded.tokenizer
    atomic_write_text(out / "tokenizer.json", tok.to_str())
    eos_token, bos_token = tok.id_to_token(loaded.eos_id), tok.id_to_token(bos)
    special = {"bos_token": bos_token, "eos_token": eos_token, "pad_token": eos_token}
    config: dict[str, Any] = {
        **special,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": loaded.cfg.model.max_seq_len,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    template = _chat_template(loaded)
    if template is not None:
        config["chat_template"] = template
    atomic_write_json(out / "tokenizer_config.json", config)
    atomic_write_json(out / "special_tokens_map.json", special)


def _chat_template(loaded: Any) -> str | None:
    """The Jinja chat template a fine-tuned run was trained with (None for a pre-trained run)."""
    if loaded.cfg.sft.parent is None:
        return None
    template = loaded.chat_template()
    return LLADA_CHAT_TEMPLATE if template.kind == "llada" else template.source


def model_card(loaded: Any, fmt: str, config: dict[str, Any]) -> str:
    """README.md: what was trained on what, for how long, how well, and how to load it."""
    from llada_lightning.config.compose import to_yaml
    from llada_lightning.rundir import read_result

    result = read_result(loaded.run_dir)
    record = result.to_dict() if result is not None else {}
    cfg = loaded.cfg
    rows = [
        ("objective", loaded.objective),
        (
            "model",
            f"{cfg.model.name}: {cfg.model.n_layers} layers, d_model {cfg.model.d_model}, {cfg.model.n_heads} heads",
        ),
        ("parameters (non-embedding / total)", f"{record.get('N_nonemb', '-')} / {record.get('N_total', '-')}"),
        ("data", _data_line(cfg)),
        ("tokens trained", record.get("tokens", "-")),
        ("optimizer steps", record.get("steps", "-")),
        ("training FLOPs (6N / full)", f"{_num(record.get('flops_6N'))} / {_num(record.get('flops_full'))}"),
        (f"validation loss ({record.get('val_loss_kind', '-')}, nats/token)", _num(record.get("val_loss"), ".4f")),
        ("validation bits per byte", _num(record.get("val_bpb"), ".4f")),
        ("status", record.get("status", "no result.json: exported from the last checkpoint")),
    ]
    if cfg.sft.parent is not None:
        rows.append(("fine-tuned from", cfg.sft.parent))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    load = (
        'from llada_lightning.interop import load_pretrained\nmodel, tokenizer, info = load_pretrained("OUT_DIR")'
        if fmt == "llada"
        else 'from transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained("OUT_DIR")'
    )
    kind = "A masked diffusion language model (LLaDA, Nie et al. 2025)" if fmt == "llada" else "An autoregressive LM"
    return (
        f"---\nlibrary_name: llada-lightning\ntags:\n- {'llada' if fmt == 'llada' else 'llama'}\n"
        f"- llada-lightning\n---\n\n# {cfg.model.name} ({loaded.objective})\n\n"
        f"{kind} trained with llada-lightning {__version__} (`{loaded.run_dir.name}`), exported in "
        f"the {fmt} format (architecture {config['architectures'][0]}).\n\n| | |\n|---|---|\n{table}\n\n"
        f"## Load\n\n```python\n{load}\n```\n\n"
        f"## Training config\n\n```yaml\n{to_yaml(cfg)}```\n"
    )


def _num(value: Any, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def _data_line(cfg: Any) -> str:
    data = cfg.data
    if cfg.sft.parent is not None:
        return f"SFT: sft.source={cfg.sft.source} ({cfg.sft.path or cfg.sft.data_files or 'built-in set'})"
    where = data.path or data.data_files or "the embedded corpus"
    return f"data.source={data.source} ({where}), tokenizer {data.tokenizer}, seq_len {data.seq_len}"
