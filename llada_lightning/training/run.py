"""One training run in its own directory: resolved config, TensorBoard logs, checkpoints, `result.json`.

Re-running the same config on the same directory resumes from `checkpoints/last.ckpt`; a run whose
`result.json` says `done` is not trained again.
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from llada_lightning.config.compose import load_run_config, to_yaml
from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import RunConfig
from llada_lightning.config.signature import config_diff, signature
from llada_lightning.config.validation import total_steps
from llada_lightning.data.datamodule import LMDataModule
from llada_lightning.io import atomic_write_json, atomic_write_text, read_json
from llada_lightning.training.checkpoint import AtomicCheckpoint
from llada_lightning.training.modules import BaseModule, build_module
from llada_lightning.training.preemption import Preempted, PreemptionHandler
from llada_lightning.training.progress import ProgressFile, progress_callback
from llada_lightning.training.quiet import quiet_lightning

RESULT = "result.json"
CONFIG = "config.yaml"
PROGRESS = "progress.json"


def run_dir_for(cfg: RunConfig) -> Path:
    """`run_dir` if set, else `<runs_root>/<objective>-<model>-<signature>`."""
    if cfg.run_dir:
        return Path(cfg.run_dir)
    return Path(cfg.runs_root) / f"{cfg.objective.name}-{cfg.model.name}-{signature(cfg)}"


def read_result(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RESULT
    if not path.is_file():
        return None
    try:
        return read_json(path)  # type: ignore[no-any-return]
    except ValueError:
        return None


def _check_same_run(cfg: RunConfig, run_dir: Path) -> None:
    """Refuse to resume (or overwrite) a directory holding a different run."""
    existing = run_dir / CONFIG
    if not existing.is_file():
        return
    diff = config_diff(load_run_config(existing), cfg)
    if diff:
        raise ConfigError(
            f"{run_dir} holds a run of a different config (differs in {'; '.join(diff[:3])}); "
            "pick another run_dir or remove that directory yourself"
        )


def build_trainer(cfg: RunConfig, run_dir: Path, steps: int) -> tuple[L.Trainer, AtomicCheckpoint, PreemptionHandler]:
    t = cfg.train
    ckpt = AtomicCheckpoint(run_dir / "checkpoints", t.ckpt_every_n_steps)
    preemption = PreemptionHandler(ckpt)
    callbacks: list[Any] = [ckpt, preemption, ProgressFile(run_dir / PROGRESS, t.log_every_n_steps, steps)]
    progress = progress_callback(t.progress_bar, t.log_every_n_steps, steps)
    rich = progress is not None and type(progress).__name__ == "RichProgressBar"
    if progress is not None:
        callbacks.append(progress)
    plugins: list[Any] = []
    if "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        # One requeue owner: the sweep layer (submitit) requeues; Lightning's own handler stays off.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    val_every = t.val_every_n_steps if t.val_every_n_steps > 0 else steps
    trainer = L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,  # type: ignore[arg-type]
        max_steps=steps,
        max_epochs=-1,
        val_check_interval=val_every * t.accumulate_grad_batches,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.grad_clip if t.grad_clip > 0 else None,
        logger=TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""),
        log_every_n_steps=t.log_every_n_steps,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=rich,
        enable_model_summary=False,
        use_distributed_sampler=False,
        deterministic=t.deterministic,
        inference_mode=False,  # metric states survive validate() before and after fit()
        default_root_dir=str(run_dir),
        plugins=plugins or None,
    )
    return trainer, ckpt, preemption


def make_result(module: BaseModule, cfg: RunConfig, run_dir: Path, steps: int, dm: LMDataModule) -> dict[str, Any]:
    progress = module.progress_metrics(steps)
    return {
        "status": "done",
        "objective": cfg.objective.name,
        "model": cfg.model.name,
        "signature": signature(cfg),
        "seed": cfg.train.seed,
        "N_nonemb": module.n_nonemb,
        "N_total": module.n_total,
        "seq_len": cfg.data.seq_len,
        "tokens": int(progress["progress/tokens"]),
        "flops_6N": progress["progress/flops_6N"],
        "flops_full": progress["progress/flops_full"],
        "flops_convention": cfg.train.flops_convention,
        "flops_budget": cfg.train.flops_budget,
        "steps": steps,
        "data_epochs": dm.samples_consumed_to_epochs(steps * module.tokens_per_step // cfg.data.seq_len),
        "val_loss": module.last_val.get("val_loss"),
        "val_bpb": module.last_val.get("val_bpb"),
        # LLaDA validates with the ELBO (an upper bound on the NLL) whatever its training weighting; ARM exactly
        "val_loss_kind": "elbo" if cfg.objective.name == "llada" else "nll",
        "train_loss_is_nll_bound": bool(module.objective.is_nll_bound),
        "val_loss_initial": module.initial_val.get("val_loss"),
        "wall_time_s": module.wall_time(),
        "run_dir": str(run_dir),
    }


def train(cfg: RunConfig) -> dict[str, Any]:
    """Train (or resume, or skip if done) the run of `cfg`; return its result dict."""
    quiet_lightning()
    run_dir = run_dir_for(cfg)
    _check_same_run(cfg, run_dir)
    done = read_result(run_dir)
    if done is not None and done.get("status") == "done":
        print(f"{run_dir}: already done (val_loss {done.get('val_loss')}); not training again")
        return done
    steps = total_steps(cfg)
    rank_zero = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0
    if rank_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG, to_yaml(cfg))
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    dm = LMDataModule(
        cfg.data,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        val_batches=cfg.train.val_batches,
        accumulate_grad_batches=cfg.train.accumulate_grad_batches,
    )
    module = build_module(cfg)
    trainer, ckpt, preemption = build_trainer(cfg, run_dir, steps)
    resume = ckpt.last_path if ckpt.last_path.is_file() else None
    if resume is not None and not zipfile.is_zipfile(resume):  # torch checkpoints are zip archives
        raise ConfigError(
            f"{resume} is not a readable checkpoint (truncated or foreign); move it away to restart this run "
            "from scratch, or restore it"
        )
    started = time.perf_counter()
    if resume is None and cfg.train.validate_at_start:
        trainer.validate(module, datamodule=dm, verbose=False)
        module.initial_val = dict(module.last_val)
    preemption.install()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    except Preempted:
        pass
    finally:
        preemption.uninstall()
    if preemption.stopped:  # checkpoint saved at a step boundary; the next segment resumes from it
        return {
            "status": "preempted",
            "steps": trainer.global_step,
            "run_dir": str(run_dir),
            "message": preemption.message,
        }
    if not module.last_val or module.last_val.get("step") != trainer.global_step:
        trainer.validate(module, datamodule=dm, verbose=False)
    result = make_result(module, cfg, run_dir, trainer.global_step, dm)
    result["segment_wall_time_s"] = time.perf_counter() - started
    result["world_size"] = trainer.world_size
    if trainer.is_global_zero:
        tokenizer = Path(dm.tokenizer_path)
        if tokenizer.is_file():
            shutil.copyfile(tokenizer, run_dir / "tokenizer.json")
        atomic_write_json(run_dir / RESULT, result)
    return result
