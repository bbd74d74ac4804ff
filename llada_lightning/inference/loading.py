"""Load a finished (or checkpointed) run directory, or a Hugging Face model directory, for inference.

A run directory written by `llada train` holds `config.yaml` (the resolved RunConfig),
`checkpoints/last.ckpt` (a Lightning checkpoint whose `state_dict` keys are `model.<backbone key>`) and
`tokenizer.json` (copied in when training finishes). A Hugging Face directory (config.json + weights +
tokenizer.json: LLaDA's format, Llama's, or one written by `llada export`) is read by `interop.load_pretrained`
and described by an equivalent RunConfig. Every problem is a `ConfigError` naming the file and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llada_lightning import rundir
from llada_lightning.config.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

    from llada_lightning.config.schema import RunConfig
    from llada_lightning.inference.decoders import Decoder
    from llada_lightning.interop.pretrained import PretrainedInfo
    from llada_lightning.models import Transformer
    from llada_lightning.sft.chat import ChatTemplate

CONFIG = rundir.CONFIG
CHECKPOINT = Path(rundir.CHECKPOINTS) / rundir.LAST_CHECKPOINT
TOKENIZER = rundir.TOKENIZER
HF_CONFIG = "config.json"  # a Hugging Face model directory (interop.load_pretrained)
# The parts of the config that decide the backbone's weights and how it must be used; a checkpoint whose
# saved hyper-parameters differ here was trained as a different model, even if the tensor shapes agree.
MODEL_KEYS = ("model.", "objective.name")


@dataclass
class LoadedRun:
    """A trained model ready for sampling and scoring (eval mode, no gradients)."""

    run_dir: Path
    cfg: RunConfig
    model: Transformer
    tokenizer: Tokenizer
    eos_id: int
    mask_id: int
    objective: str  # "llada" or "arm"
    decoder: Decoder  # how this run samples and scores (chosen from the objective by `decoders.decoder_for`)
    device: torch.device
    pretrained: PretrainedInfo | None = None  # set for a Hugging Face directory (`interop.load_pretrained`)

    @property
    def tokenizer_path(self) -> Path:
        """The tokenizer.json this model uses."""
        if self.pretrained is not None:
            return self.run_dir / TOKENIZER
        return tokenizer_file(self.run_dir, self.cfg)

    @property
    def max_length(self) -> int:
        """The context the model was trained on (`data.seq_len`): scoring windows default to it."""
        return int(self.cfg.data.seq_len)

    @property
    def max_seq_len(self) -> int:
        """The longest sequence the model takes (`model.max_seq_len`): prompt + generated tokens must fit."""
        return int(self.cfg.model.max_seq_len)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text).ids)

    def decode(self, ids: Any) -> str:
        return str(self.tokenizer.decode([int(i) for i in ids]))

    def chat_template(self) -> ChatTemplate:
        """The chat template the run was fine-tuned with (`sft.chat_template`, default llada), on its tokenizer.

        `load_template("llada", ...)` would add the chat markers to a tokenizer that lacks them, with ids beyond
        the model's vocabulary: a run whose tokenizer lacks them was never fine-tuned with that template, and is
        refused (the SFT run's tokenizer.json holds them, sft/parent.py)."""
        from llada_lightning.sft.chat import LLADA_MARKERS, load_template, tokenizer_config_home

        if self.pretrained is not None:  # a Hugging Face directory: its tokenizer_config.json's template
            if self.pretrained.chat_template is None:
                raise ConfigError(
                    f"{self.run_dir}: its tokenizer_config.json has no chat_template (not an instruct model); "
                    "drop --chat"
                )
            return load_template("tokenizer", self.tokenizer, self.eos_id, self.tokenizer_path)
        choice = self.cfg.sft.chat_template
        missing = [t for t in LLADA_MARKERS if self.tokenizer.token_to_id(t) is None]
        if missing and (choice == "llada" or self.cfg.sft.parent is None):
            raise ConfigError(
                f"{self.run_dir}: this run was not fine-tuned with a chat template (its tokenizer has no "
                f"{missing[0]}); fine-tune it with `llada sft {self.run_dir}` or drop --chat"
            )
        home = tokenizer_config_home(self.cfg.data.tokenizer, tokenizer_file(self.run_dir, self.cfg))
        return load_template(choice, self.tokenizer, self.eos_id, home)


def load_run(run_dir: str | Path, device: str = "cpu", checkpoint: str | Path | None = None) -> LoadedRun:
    """Load `run_dir` (written by `llada train`, or a Hugging Face model directory) onto `device`; `checkpoint`
    overrides `checkpoints/last.ckpt`."""

    from llada_lightning.config.compose import load_run_config
    from llada_lightning.data.tokenizer import eos_id, load_tokenizer
    from llada_lightning.models import build_model

    root = Path(run_dir).expanduser()
    if not root.is_dir():
        raise ConfigError(
            f"{run_dir}: no such directory; pass a run directory written by `llada train` or a Hugging Face "
            "model directory"
        )
    config_path = root / CONFIG
    if not config_path.is_file() and (root / HF_CONFIG).is_file():
        if checkpoint is not None:
            raise ConfigError(f"{root} is a Hugging Face model directory; --checkpoint applies to run directories")
        return load_hf_directory(root, device)
    if not config_path.is_file():
        raise ConfigError(
            f"{root}: no {CONFIG}; this is not a run directory written by `llada train` "
            f"(one holds {CONFIG}, {CHECKPOINT} and {TOKENIZER}) nor a Hugging Face model directory ({HF_CONFIG})"
        )
    cfg = load_run_config(config_path)
    ckpt_path = Path(checkpoint).expanduser() if checkpoint is not None else root / CHECKPOINT
    if not ckpt_path.exists():
        raise ConfigError(
            f"{root}: no checkpoint at {ckpt_path}; train the run first (`llada train ... run_dir={root}`) "
            "or wait for its first checkpoint (train.ckpt_every_n_steps)"
        )
    tok_path = tokenizer_file(root, cfg)
    tokenizer = load_tokenizer(tok_path, what=str(tok_path), fix="restore the tokenizer.json this run was trained with")
    try:
        eos = eos_id(tokenizer, cfg.data.eos_token)
    except ValueError as exc:
        raise ConfigError(f"{tok_path}: {exc}") from exc
    if tokenizer.get_vocab_size(with_added_tokens=True) > cfg.model.vocab_size:
        raise ConfigError(
            f"{tok_path} has {tokenizer.get_vocab_size(with_added_tokens=True)} tokens but the model only "
            f"{cfg.model.vocab_size} outputs; restore the tokenizer.json this run was trained with"
        )

    if ckpt_path.is_file() and ckpt_path.stat().st_size == 0:
        raise ConfigError(f"{ckpt_path}: empty file (0 bytes), not a checkpoint; restore it or retrain the run")
    if ckpt_path.is_dir() and not rundir.checkpoint_exists(ckpt_path):
        raise ConfigError(
            f"{ckpt_path}: a directory without {rundir.SHARDED_META}, not a sharded checkpoint of `llada train`; "
            "restore it or retrain the run"
        )
    try:
        from llada_lightning.training.checkpoint import read_checkpoint

        ckpt = read_checkpoint(ckpt_path, map_location=device)  # a file, or a sharded (fsdp) directory
    except Exception as exc:  # unpickling errors of many kinds: report the file, not a traceback
        detail = _first_line(exc).split(". ")[0]  # torch's messages go on with advice on many sentences
        raise ConfigError(f"{ckpt_path}: not a readable checkpoint ({detail}); restore it or retrain the run") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"{ckpt_path}: not a Lightning checkpoint (no state_dict); pass one written by `llada train`")
    _check_hyper_parameters(ckpt, cfg, ckpt_path, config_path)
    state = _backbone_state(ckpt["state_dict"])
    if not state:
        raise ConfigError(f"{ckpt_path}: no `model.*` weights in its state_dict; pass a checkpoint of `llada train`")

    model = build_model(cfg, device=device)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"{ckpt_path} does not match the model of {config_path} ({detail}); restore the config.yaml that "
            "trained this checkpoint, or retrain into a fresh run_dir"
        ) from exc
    return _loaded(root, cfg, model, tokenizer, eos, device)


def load_hf_directory(root: Path, device: str = "cpu") -> LoadedRun:
    """A Hugging Face model directory as a `LoadedRun`: the model from `interop.load_pretrained`, its tokenizer.json,
    and a RunConfig that says what a run directory's would (model, objective, tokenizer, context)."""
    from llada_lightning.config.schema import DataConfig, ObjectiveConfig, RunConfig
    from llada_lightning.data.tokenizer import eos_id
    from llada_lightning.interop import load_pretrained

    model, tokenizer, info = load_pretrained(root, device=device)
    if tokenizer is None:
        raise ConfigError(
            f"{root}: no {TOKENIZER}; sampling and scoring need the model's fast tokenizer file (transformers writes "
            "it with `AutoTokenizer.from_pretrained(...).save_pretrained(DIR)`)"
        )
    eos = info.eos_id if info.eos_id is not None and info.eos_id < tokenizer.get_vocab_size() else None
    if eos is None:
        try:
            eos = eos_id(tokenizer)
        except ConfigError as exc:
            raise ConfigError(f"{root / TOKENIZER}: {exc}") from exc
    cfg = RunConfig(
        model=info.config,
        objective=ObjectiveConfig(name=info.objective),
        data=DataConfig(
            source="hf",
            tokenizer=str(root / TOKENIZER),
            eos_token=tokenizer.id_to_token(eos),
            vocab_size=info.config.vocab_size,
            seq_len=info.config.max_seq_len,
        ),
        run_dir=str(root),
    )
    return _loaded(root, cfg, model, tokenizer, eos, device, info)


def _loaded(
    root: Path,
    cfg: RunConfig,
    model: Transformer,
    tokenizer: Tokenizer,
    eos: int,
    device: str,
    pretrained: PretrainedInfo | None = None,
) -> LoadedRun:
    """The LoadedRun of a model in eval mode without gradients; the objective, mask id and decoder from `cfg`."""
    import torch

    from llada_lightning.inference.decoders import decoder_for

    model.eval().requires_grad_(False)
    return LoadedRun(
        run_dir=root,
        cfg=cfg,
        model=model,
        tokenizer=tokenizer,
        eos_id=eos,
        mask_id=cfg.model.mask_id,
        objective=cfg.objective.name,
        decoder=decoder_for(cfg.objective.name, cfg.model.mask_id),
        device=torch.device(device),
        pretrained=pretrained,
    )


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type when it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def tokenizer_file(root: Path, cfg: RunConfig) -> Path:
    """`<run>/tokenizer.json`, else the run's own `data.tokenizer` file (a run that uses a fixed tokenizer)."""
    path = root / TOKENIZER
    if path.is_file():
        return path
    if cfg.data.tokenizer != "bpe" and Path(cfg.data.tokenizer).expanduser().is_file():
        return Path(cfg.data.tokenizer).expanduser()
    raise ConfigError(
        f"{root}: no {TOKENIZER}; `llada train` copies it into the run directory when training finishes: "
        f"finish the run (rerun the same `llada train` command) or copy the run's tokenizer to {path}"
    )


def _backbone_state(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Backbone weights from a LightningModule state_dict: `model.` stripped (and torch.compile's `_orig_mod.`)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("model."):
            out[key.removeprefix("model.").replace("_orig_mod.", "")] = value
    return out


def _check_hyper_parameters(ckpt: dict[str, Any], cfg: RunConfig, ckpt_path: Path, config_path: Path) -> None:
    """The checkpoint's saved config must agree with config.yaml on the model and objective (the causal flag
    and mask id change how a model of identical shapes must be used)."""
    saved = (ckpt.get("hyper_parameters") or {}).get("cfg")
    if not isinstance(saved, dict):
        return  # a checkpoint without hyper-parameters: shapes are the only check
    from omegaconf import OmegaConf

    from llada_lightning.config.compose import compose
    from llada_lightning.config.signature import config_diff

    try:
        saved_cfg = compose([], base=OmegaConf.create(saved), check=False)
    except ConfigError:
        return
    diff = [d for d in config_diff(saved_cfg, cfg) if d.startswith(MODEL_KEYS)]
    if diff:
        raise ConfigError(
            f"{ckpt_path} does not match {config_path}: it was trained with {'; '.join(diff[:3])} "
            "(checkpoint value first); restore the config.yaml that trained this checkpoint"
        )
