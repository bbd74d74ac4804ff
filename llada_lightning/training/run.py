"""One training run in its own directory: resolved config, TensorBoard logs, checkpoints, `result.json`.

Re-running the same config on the same directory resumes from `checkpoints/last.ckpt`; a run whose
`result.json` says `done` is not trained again.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from llada_lightning import rundir
from llada_lightning.config.compose import load_run_config, to_yaml
from llada_lightning.config.errors import ConfigError
from llada_lightning.config.schema import RunConfig
from llada_lightning.config.signature import config_diff, signature
from llada_lightning.data.datamodule import LMDataModule
from llada_lightning.data.tokenizer import first_line
from llada_lightning.flops import total_steps
from llada_lightning.io import atomic_write, atomic_write_text
from llada_lightning.rundir import RunLock, RunResult, read_result, write_result
from llada_lightning.sft.datamodule import SFTDataModule
from llada_lightning.sft.parent import load_parent_weights, resolve_parent
from llada_lightning.training import trunk
from llada_lightning.training.checkpoint import (
    AtomicCheckpoint,
    check_readable,
    recover_checkpoint,
    unreadable_checkpoint,
)
from llada_lightning.training.modules import BaseModule, build_module
from llada_lightning.training.preemption import Preempted, PreemptionHandler
from llada_lightning.training.progress import ProgressFile, progress_callback, resume_line, start_banner
from llada_lightning.training.quiet import quiet_lightning
from llada_lightning.training.strategy import build_strategy, trainer_precision


def run_dir_for(cfg: RunConfig) -> Path:
    """`run_dir` if set, else `<runs_root>/<objective>-<model>-<signature>`."""
    if cfg.run_dir:
        return Path(cfg.run_dir)
    prefix = "sft-" if cfg.sft.parent is not None else ""
    return Path(cfg.runs_root) / f"{prefix}{cfg.objective.name}-{cfg.model.name}-{signature(cfg)}"


def _check_same_run(cfg: RunConfig, run_dir: Path) -> None:
    """Refuse to resume (or overwrite) a directory holding a different run."""
    existing = rundir.config_path(run_dir)
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
    ckpt = AtomicCheckpoint(rundir.checkpoint_dir(run_dir), t.ckpt_every_n_steps)
    preemption = PreemptionHandler(ckpt)
    callbacks: list[Any] = [ckpt, preemption, ProgressFile(rundir.progress_path(run_dir), t.log_every_n_steps, steps)]
    progress = progress_callback(t.progress_bar, t.log_every_n_steps, steps)
    rich = progress is not None and isinstance(progress, ProgressBar)
    if progress is not None:
        callbacks.append(progress)
    callbacks.extend(trunk.callbacks(run_dir))  # a WSD shared trunk also saves a checkpoint at each branch step
    plugins: list[Any] = []
    if "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        # One requeue owner: the sweep layer (submitit) requeues; Lightning's own handler stays off.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    val_every = t.val_every_n_steps if t.val_every_n_steps > 0 else steps
    try:
        trainer = _trainer(t, steps, val_every, run_dir, callbacks, rich, plugins)
    except (ValueError, TypeError, MisconfigurationException) as exc:  # Lightning refuses the combination
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ConfigError(
            f"Lightning refuses train.strategy={t.strategy} accelerator={t.accelerator} devices={t.devices} "
            f"precision={t.precision}: {lines[0] if lines else type(exc).__name__}"
        ) from exc
    return trainer, ckpt, preemption


def _trainer(
    t: Any, steps: int, val_every: int, run_dir: Path, callbacks: list[Any], rich: bool, plugins: list[Any]
) -> L.Trainer:
    """The Trainer of `llada train`: step-based, our checkpointing and progress callbacks, TensorBoard logs."""
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=build_strategy(t),  # fsdp: FSDP2 per block (training/strategy.py)
        precision=trainer_precision(t),  # type: ignore[arg-type]
        max_steps=steps,
        max_epochs=-1,
        val_check_interval=val_every * t.accumulate_grad_batches,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.grad_clip if t.grad_clip > 0 else None,
        logger=TensorBoardLogger(save_dir=str(run_dir), name=rundir.TENSORBOARD, version=""),
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


def _datamodule(cfg: RunConfig) -> LMDataModule | SFTDataModule:
    """Pre-training blocks, or an SFT run's instruction examples (sft.parent set)."""
    if cfg.sft.parent is not None:
        return SFTDataModule(cfg)
    return LMDataModule(
        cfg.data,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        val_batches=cfg.train.val_batches,
        accumulate_grad_batches=cfg.train.accumulate_grad_batches,
    )


def make_result(
    module: BaseModule, cfg: RunConfig, run_dir: Path, steps: int, dm: LMDataModule | SFTDataModule
) -> RunResult:
    progress = module.progress_metrics(steps)
    result = RunResult(
        status="done",
        objective=cfg.objective.name,
        model=cfg.model.name,
        signature=signature(cfg),
        seed=cfg.train.seed,
        N_nonemb=module.n_nonemb,
        N_total=module.n_total,
        seq_len=cfg.data.seq_len,
        tokens=int(progress["progress/tokens"]),
        flops_6N=progress["progress/flops_6N"],
        flops_full=progress["progress/flops_full"],
        flops_convention=cfg.train.flops_convention,
        flops_budget=cfg.train.flops_budget,
        steps=steps,
        data_epochs=dm.samples_consumed_to_epochs(steps * module.tokens_per_step // cfg.data.seq_len),
        unique_tokens=dm.unique_tokens,
        val_loss=module.last_val.get("val_loss"),
        val_bpb=module.last_val.get("val_bpb"),
        val_loss_kind=module.objective.val_loss_kind,  # elbo (an upper bound on the NLL) or nll (exact)
        train_loss_is_nll_bound=bool(module.objective.is_nll_bound),
        val_loss_initial=module.initial_val.get("val_loss"),
        wall_time_s=module.wall_time(),
        run_dir=str(run_dir),
    )
    if cfg.sft.parent is not None:  # the pre-trained run it fine-tunes, and what the SFT data held
        parent = resolve_parent(cfg.sft.parent)
        result.extra.update(parent=str(parent.run_dir), parent_checkpoint=str(parent.checkpoint))
        result.extra.update(sft_examples=dm.train_blocks)
    branch = rundir.branch_record(run_dir)
    if branch:  # a WSD branch off a shared trunk: what it cost, and what an independent run would have
        key = f"progress/flops_{cfg.train.flops_convention}"
        result.extra.update(trunk.branch_flops(branch, lambda s: module.progress_metrics(s)[key], steps))
    return result


def train(cfg: RunConfig) -> RunResult:
    """Train (or resume, or skip if done) the run of `cfg`; return its result record.

    Rank 0 holds the run directory's lock for the whole run: a second `llada train` on the same directory (or a
    manual run racing a Slurm requeue) stops with `RunDirBusy` naming the holder, before touching anything.
    """
    quiet_lightning()
    run_dir = run_dir_for(cfg)
    _check_writable(run_dir, "run_dir" if cfg.run_dir else "runs_root")
    _check_same_run(cfg, run_dir)
    _check_accelerator(cfg)  # before the lock creates the run directory
    if not rundir.is_rank_zero():
        return _train(cfg, run_dir)
    with RunLock(run_dir):
        return _train(cfg, run_dir)


def _check_writable(run_dir: Path, key: str) -> None:
    """The run directory is (or can be made) a writable directory: else one line naming `key`."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{key}: {run_dir} is a file, not a directory; choose another {key}")
    parent = run_dir
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}: {run_dir} lies under {parent}, which is a file; choose another {key}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot write to {parent} (permission denied); choose another {key}")


def _check_accelerator(cfg: RunConfig) -> None:
    """train.accelerator=gpu|cuda needs a visible GPU: checked at train start, not when composing (login nodes)."""
    if str(cfg.train.accelerator).lower() not in ("gpu", "cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        where = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        raise ConfigError(
            f"train.accelerator={cfg.train.accelerator} but no GPU is visible on this machine{where}; "
            "use train.accelerator=cpu or auto"
        )


def _shard_failure(exc: BaseException) -> str:
    """The first rank's failure inside a CheckpointException (`failures`: rank -> (exception, stack))."""
    failures = getattr(exc, "failures", None) or {}
    for rank, failure in sorted(failures.items()):
        cause = failure[0] if isinstance(failure, tuple) else failure
        return f"rank {rank}: {first_line(cause)}"
    return first_line(exc)


def _train(cfg: RunConfig, run_dir: Path) -> RunResult:
    done = read_result(run_dir)
    if done is not None and done.done:
        print(f"{run_dir}: already done (val_loss {done.get('val_loss')}); not training again")
        return done
    steps = total_steps(cfg)
    if rundir.is_rank_zero():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(rundir.config_path(run_dir), to_yaml(cfg))
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    dm = _datamodule(cfg)
    if cfg.sft.parent is not None:
        dm.setup()  # tokenise the instruction data before the model is built (and before any step)
    if cfg.model.vocab_size < dm.vocab_size:  # a tokenizer file's id space, known once it is read
        raise ConfigError(
            f"model.vocab_size={cfg.model.vocab_size} is smaller than the vocabulary of data.tokenizer="
            f"{cfg.data.tokenizer} ({dm.vocab_size}); set model.vocab_size>={dm.vocab_size}"
        )
    module = build_module(cfg)
    trainer, ckpt, preemption = build_trainer(cfg, run_dir, steps)
    if isinstance(dm, SFTDataModule):
        module.sft_lengths = dm.batch_length
    if rundir.is_rank_zero():
        recover_checkpoint(ckpt.last_path)  # a kill while a sharded checkpoint was moved into place
        trunk.seed_branch(run_dir)  # a WSD branch's first start: its trunk's checkpoint becomes its last.ckpt
    resume = ckpt.last_path if ckpt.last_path.exists() else None  # a file, or a sharded directory (fsdp)
    if resume is not None:
        check_readable(resume)  # empty, truncated or foreign: one line, and the file is left as it is
    if trainer.is_global_zero:  # set by the Trainer for every launcher (srun, torchrun, Lightning's own)
        print(start_banner(module, steps, run_dir), flush=True)
        if resume is not None:
            print(resume_line(resume, steps), flush=True)
    if resume is None and cfg.sft.parent is not None:  # an SFT run's first start: the parent's weights
        load_parent_weights(module.model, cfg.sft.parent)
    started = time.perf_counter()
    if resume is None and cfg.train.validate_at_start:
        trainer.validate(module, datamodule=dm, verbose=False)
        module.initial_val = dict(module.last_val)
    preemption.install()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    except Preempted:
        pass
    except RuntimeError as exc:  # an archive whose structure is whole but whose tensors are corrupt
        if resume is not None and "PytorchStreamReader" in str(exc):
            raise unreadable_checkpoint(resume, first_line(exc).split(". ")[0]) from exc
        raise
    except BaseException as exc:  # torch.distributed.checkpoint's CheckpointException (a BaseException): a bad shard
        if resume is not None and resume.is_dir() and type(exc).__name__ == "CheckpointException":
            raise unreadable_checkpoint(resume, _shard_failure(exc)) from exc
        raise
    finally:
        preemption.uninstall()
    if preemption.stopped:  # checkpoint saved at a step boundary; the next segment resumes from it
        return RunResult(
            status="preempted", steps=trainer.global_step, run_dir=str(run_dir), message=preemption.message
        )
    if not module.last_val or module.last_val.get("step") != trainer.global_step:
        trainer.validate(module, datamodule=dm, verbose=False)
    result = make_result(module, cfg, run_dir, trainer.global_step, dm)
    result.segment_wall_time_s = time.perf_counter() - started
    result.world_size = trainer.world_size
    if trainer.is_global_zero:
        tokenizer = Path(dm.tokenizer_path)
        if tokenizer.is_file():
            atomic_write(rundir.tokenizer_path(run_dir), lambda tmp: shutil.copyfile(tokenizer, tmp))
        write_result(run_dir, result)
    return result
