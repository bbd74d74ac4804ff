"""The pre-trained run an SFT run starts from: where it is, the config it hands down, and its weights.

`sft.parent` names a run directory of `llada train` (its `checkpoints/last.ckpt`) or a checkpoint file inside
one. The SFT run inherits the parent's model, data and objective groups (the backbone and the tokenizer must be the
parent's), LLaDA's SFT schedule (configs/train/sft.yaml) over the parent's train group, and the tokenizer with
LLaDA's chat markers added when it lacks them; the model's vocabulary then grows by as many rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llada_lightning import rundir
from llada_lightning.config.errors import ConfigError

# The parent's groups an SFT run keeps; `train` is re-based on configs/train/sft.yaml, `sft` starts afresh.
INHERITED = ("model", "attention", "data", "objective", "train", "runs_root")
PARENT_FIX = "pass a run directory written by `llada train` (or a checkpoint file inside one)"


@dataclass(frozen=True)
class ParentRun:
    run_dir: Path
    checkpoint: Path

    @property
    def config_path(self) -> Path:
        return rundir.config_path(self.run_dir)

    @property
    def tokenizer_path(self) -> Path:
        from llada_lightning.config.compose import load_run_config
        from llada_lightning.inference.loading import tokenizer_file

        return tokenizer_file(self.run_dir, load_run_config(self.config_path))


def resolve_parent(spec: str) -> ParentRun:
    """The parent run of `sft.parent=spec` (a run directory or a checkpoint in one), checked to be usable."""
    path = Path(spec).expanduser()
    if path.is_file() or (path.is_dir() and rundir.checkpoint_exists(path)):  # a file, or a sharded checkpoint
        run_dir = path.parent.parent if path.parent.name == rundir.CHECKPOINTS else path.parent
        checkpoint = path
    elif path.is_dir():
        run_dir, checkpoint = path, rundir.last_checkpoint(path)
    else:
        raise ConfigError(f"sft.parent={spec!r}: no such run directory or checkpoint; {PARENT_FIX}")
    run_dir = run_dir.resolve()
    if not rundir.config_path(run_dir).is_file():
        raise ConfigError(f"sft.parent={spec!r}: {run_dir} has no {rundir.CONFIG}; {PARENT_FIX}")
    if not rundir.checkpoint_exists(checkpoint):
        raise ConfigError(
            f"sft.parent={spec!r}: no checkpoint at {checkpoint}; finish (or resume) the parent run first, or pass one "
            "of its checkpoint files"
        )
    return ParentRun(run_dir, checkpoint.resolve())


def sft_tokenizer(parent: ParentRun, chat_template: str) -> Any:
    """The parent's tokenizer with what `chat_template` needs added (llada: its markers), and its EOS id."""
    from llada_lightning.config.compose import load_run_config
    from llada_lightning.data.tokenizer import eos_id, load_tokenizer
    from llada_lightning.inference.loading import tokenizer_file
    from llada_lightning.sft.chat import ensure_special_tokens

    cfg = load_run_config(parent.config_path)
    tok_path = tokenizer_file(parent.run_dir, cfg)
    tokenizer = load_tokenizer(tok_path, what=str(tok_path), fix="restore the parent run's tokenizer.json")
    if chat_template == "llada":
        ensure_special_tokens(tokenizer)
    return tokenizer, eos_id(tokenizer, cfg.data.eos_token)


def parent_base(spec: str, chat_template: str = "llada") -> dict[str, Any]:
    """The config an SFT run of `spec` starts from (before configs/train/sft.yaml and the user's overrides)."""
    from omegaconf import OmegaConf

    parent = resolve_parent(spec)
    tree = OmegaConf.to_container(OmegaConf.load(parent.config_path))
    assert isinstance(tree, dict)
    base: dict[str, Any] = {key: tree[key] for key in INHERITED if key in tree}
    tokenizer, _ = sft_tokenizer(parent, chat_template)
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    model = base.setdefault("model", {})
    if size > int(model.get("vocab_size", 0)):  # new chat tokens: the vocabulary grows (load_parent_weights)
        model["vocab_size"] = size
    return base


def grow_rows(weight: Any, rows: int, keep_last: bool) -> Any:
    """`weight` [R, d] grown to `rows` rows; new rows = the mean of the old ones (Hewitt 2021, "Initializing
    New Word Embeddings for Pretrained Language Models"). `keep_last`: the old last row (the reserved mask
    embedding, SMDM's convention) stays last."""
    import torch

    if rows == weight.shape[0]:
        return weight
    body = weight[:-1] if keep_last else weight
    extra = rows - weight.shape[0]
    grown = torch.cat([body, body.mean(dim=0, keepdim=True).expand(extra, -1)], dim=0)
    return torch.cat([grown, weight[-1:]], dim=0) if keep_last else grown


def load_parent_weights(model: Any, parent_spec: str) -> None:
    """Copy the parent's backbone weights into `model` (growing the vocabulary rows where it grew)."""
    parent = resolve_parent(parent_spec)
    from llada_lightning.inference.loading import load_run

    loaded = load_run(parent.run_dir, checkpoint=parent.checkpoint)
    state = loaded.model.state_dict()
    old, new = loaded.cfg.model, model.config
    state["embed.weight"] = grow_rows(state["embed.weight"], new.embedding_rows, old.mask_token_id is None)
    if "head.weight" in state:
        state["head.weight"] = grow_rows(state["head.weight"], new.vocab_size, False)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:240]
        raise ConfigError(
            f"sft.parent={parent_spec}: its weights do not fit this run's model ({detail}); do not override model.* "
            "in an SFT run"
        ) from exc


def sft_overrides(parent: str, overrides: list[str]) -> list[str]:
    """`llada sft PARENT [overrides]` as `llada train` overrides: sft.parent, and `data=` read as the SFT data
    (instructions, a JSONL file or glob, or a `datasets` name), not as the pre-training data group."""
    import glob

    out = [f"sft.parent={parent}"]
    for token in overrides:
        key, _, value = token.partition("=")
        if key.strip() != "data" or not _:
            out.append(token)
        elif value == "instructions":
            out.append("sft.source=instructions")
        elif value.endswith((".jsonl", ".json")) or glob.glob(str(Path(value).expanduser())):
            out += ["sft.source=jsonl", f"sft.data_files=[{value}]"]
        else:
            out += ["sft.source=hf", f"sft.path={value}"]
    return out
