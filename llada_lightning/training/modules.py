"""The two LightningModules. They differ only in their objective (and hence the attention mask):
everything else (backbone, optimiser, LR schedule, logging, FLOP accounting, validation) is shared."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf
from torchmetrics import SumMetric

from llada_lightning.config.schema import RunConfig
from llada_lightning.flops import (
    CONVENTIONS,
    flops_per_token,
    mfu,
    param_counts,
    tokens_per_step,
    total_steps,
    training_flops,
)
from llada_lightning.models import build_model
from llada_lightning.objectives import build_objective
from llada_lightning.training.lr_schedule import lr_multiplier, warmup_steps
from llada_lightning.training.strategy import parallelize

# Validation mask draws depend on this constant only (not on the training seed), so every run of a
# study is scored on the same masks and validation numbers are comparable across runs.
VALIDATION_SEED = 20250214


def step_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, step, micro-batch, rank): stateless, hence exact on resume."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@dataclasses.dataclass
class TrainedTokens:
    """What the first `steps` optimizer steps trained on, summed over every rank and micro-batch (exact ints).

    `tokens` = sum over sequences of the length L each was trained at; `token_context` = sum of L^2 (tokens
    times the context they attend over: the attention term of the "full" FLOP convention). LLaDA's
    random-length micro-batches (`objective.random_length_prob`; each rank and micro-batch draws its own)
    make both smaller than steps x tokens per step.
    """

    steps: int = 0
    tokens: int = 0
    token_context: int = 0


class BaseModule(L.LightningModule):
    """Shared training machinery; subclasses only name their objective."""

    objective_name: str = ""

    def __init__(self, cfg: RunConfig | dict[str, Any]) -> None:
        super().__init__()
        if isinstance(cfg, dict):  # loaded from a checkpoint's hyper-parameters
            from llada_lightning.config.compose import compose

            cfg = compose([], base=OmegaConf.create(cfg), check=False)
        if self.objective_name and cfg.objective.name != self.objective_name:
            raise ValueError(f"{type(self).__name__} needs objective.name={self.objective_name!r}")
        self.cfg = cfg
        self.save_hyperparameters({"cfg": OmegaConf.to_container(OmegaConf.structured(cfg))})
        self.objective = build_objective(cfg.objective, cfg.model.mask_id)
        # the objective names its attention: the only backbone difference between LLaDA and the ARM
        self.model = build_model(cfg, causal=self.objective.causal)
        if cfg.train.compile:
            self.model.compile()
        self.total_steps = total_steps(cfg)
        self.tokens_per_step = tokens_per_step(cfg)
        self.n_nonemb, self.n_total = param_counts(cfg.model)
        self.flops_per_token = {c: flops_per_token(cfg.model, cfg.data.seq_len, c) for c in CONVENTIONS}
        self.trained = TrainedTokens()  # counted in training_step, saved in checkpoints
        self.val_nll = SumMetric()
        self.val_tokens = SumMetric()
        self.last_val: dict[str, float] = {}
        self.initial_val: dict[str, float] = {}  # the untrained model's score (train.validate_at_start)
        self.wall_time_before = 0.0  # seconds spent in earlier (pre-resume) segments of this run
        self._fit_start = time.perf_counter()
        # (time, step, tokens, full-convention FLOPs) at the last log
        self._last_log: tuple[float, int, int, float] | None = None
        self.peak_flops: float | None = None  # of all devices together, for perf/mfu (resolved at train start)
        self._loss_sum: torch.Tensor | None = None  # micro-batch losses since the last log (no device sync)
        self._loss_count = 0
        self._interval: tuple[int, dict[str, float]] | None = None  # (step, metrics) of the last log
        # SFT runs: the padded length of micro-batch (step, micro, rank), from the data module's order
        self.sft_lengths: Callable[[int, int, int], int] | None = None

    def configure_model(self) -> None:
        """Activation checkpointing and FSDP sharding (train.activation_checkpointing, train.strategy=fsdp), applied
        to the plain backbone from outside (training/strategy.py); a no-op when neither is set, idempotent."""
        parallelize(self.model, self.cfg.train, self.device_mesh)

    # -- training ---------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids, attention_mask)

    def _generator(self, *parts: int) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(step_seed(*parts))
        return gen

    def _step_generator(self, step: int, micro: int, rank: int) -> torch.Generator:
        """The generator of (step, micro-batch, rank): all of that micro-batch's randomness comes from it."""
        return self._generator(self.cfg.train.seed, step, micro, rank)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        micro = batch_idx % self.cfg.train.accumulate_grad_batches
        gen = self._step_generator(self.global_step, micro, self.global_rank)
        if isinstance(batch, dict):  # an SFT batch: prompt + EOS-padded answer, and the prompt lengths
            out = self.objective.sft_training_loss(self.model, batch["input_ids"], batch["prompt_lengths"], gen)
        else:
            out = self.objective.training_loss(self.model, batch, gen)
        self._count_micro_batch(micro, int(out["seq_len"]))
        loss = out["loss"]
        if self.cfg.train.loss_guard and self._any_rank_non_finite(loss):
            raise FloatingPointError(
                f"non-finite training loss at step {self.global_step} (this rank: {loss.item()}): the last "
                "checkpoint is intact; resume it with a lower train.lr (LLaDA hit the same at 1.2T tokens)"
            )
        self._add_loss(loss)
        return loss

    def _add_loss(self, loss: torch.Tensor) -> None:
        """Add a micro-batch's loss to the log interval's running sum (logged as a mean at the interval's end)."""
        value = loss.detach().float()
        self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
        self._loss_count += 1

    def _any_rank_non_finite(self, loss: torch.Tensor) -> bool:
        """True on every rank when any rank's loss is NaN/inf, so that all ranks stop together (none hangs)."""
        bad = not bool(torch.isfinite(loss.detach()))
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        return bad

    # -- what was trained: tokens and FLOPs -------------------------------------------------------------
    def _random_lengths(self) -> bool:
        """Whether some micro-batches train on a shorter length (LLaDA's random-length steps)."""
        return hasattr(self.objective, "sample_length") and self.cfg.objective.random_length_prob > 0

    def micro_batch_length(self, step: int, micro: int, rank: int) -> int:
        """The sequence length that (step, micro, rank) trains on, redrawn from its generator.

        `LLaDAObjective.training_loss` draws the length first from that generator (objectives/llada.py), so
        the same call on a fresh generator of the same seed, on the same device type, gives the same length.
        """
        if self.sft_lengths is not None:
            return int(self.sft_lengths(step, micro, rank))
        seq_len = self.cfg.data.seq_len
        if not self._random_lengths():
            return seq_len
        return int(self.objective.sample_length(seq_len, self._step_generator(step, micro, rank)))  # type: ignore[attr-defined]

    def _count_micro_batch(self, micro: int, length: int) -> None:
        """Add this micro-batch of every rank to `self.trained`: this rank's `length` as trained, the others'
        redrawn from their generators (no communication), so every rank holds the same count."""
        t = self.cfg.train
        step = self.global_step
        if micro == 0 and self.trained.steps != step:  # a checkpoint without the count: recount from step 0
            self.trained = self.count_trained(step)
        for rank in range(t.devices * t.num_nodes):
            used = length if rank == self.global_rank else self.micro_batch_length(step, micro, rank)
            self.trained.tokens += t.batch_size * used
            self.trained.token_context += t.batch_size * used * used
        if micro == t.accumulate_grad_batches - 1:
            self.trained.steps += 1

    def count_trained(self, steps: int) -> TrainedTokens:
        """`TrainedTokens` of the first `steps` optimizer steps, recomputed from the generators' seeds."""
        t = self.cfg.train
        count = TrainedTokens(steps=steps)
        for step in range(steps):
            for micro in range(t.accumulate_grad_batches):
                for rank in range(t.devices * t.num_nodes):
                    used = self.micro_batch_length(step, micro, rank)
                    count.tokens += t.batch_size * used
                    count.token_context += t.batch_size * used * used
        return count

    def on_train_start(self) -> None:
        self._fit_start = time.perf_counter()
        if self.trained.steps != self.global_step:  # a checkpoint without the count: recount from step 0
            self.trained = self.count_trained(self.global_step)
        self._last_log, self._interval = None, None
        self.peak_flops = self._peak_flops()
        self._loss_sum, self._loss_count = None, 0

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._last_log is None:  # the segment's first step starts: its first tokens/s is measured from here
            self._last_log = (time.perf_counter(), self.global_step, self.trained.tokens, self._flops_full())

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log the interval's metrics at `global_step` (steps completed, 1-based), as the console shows it.

        Lightning's `self.log` would stamp them with the step index before its increment (0-based); the loggers
        are therefore called directly, and `self.log` (logger=False) only feeds the progress bar and callbacks.
        """
        t = self.cfg.train
        if self.global_step % t.log_every_n_steps or (batch_idx + 1) % t.accumulate_grad_batches:
            return
        metrics = self.interval_metrics()
        self._log_scalars(metrics)
        self.log_dict({k: v for k, v in metrics.items() if k != "train/loss"}, on_step=True, logger=False)
        if "train/loss" in metrics:
            self.log("train/loss", metrics["train/loss"], on_step=True, prog_bar=True, logger=False)

    def _log_scalars(self, metrics: dict[str, float]) -> None:
        """Write `metrics` to every logger at step `global_step` (the loggers write on rank 0 only)."""
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)

    def interval_metrics(self) -> dict[str, float]:
        """The metrics of the log interval ending at this optimizer step, computed once per step (callbacks call
        it before this module's `on_train_batch_end`): train/loss is the mean over its micro-batches; tokens/s
        is measured from the previous log, or from the segment's first step, and absent until known."""
        step = self.global_step
        if self._interval is not None and self._interval[0] == step:
            return self._interval[1]
        metrics = self.progress_metrics(step)
        if self._loss_sum is not None and self._loss_count:
            metrics["train/loss"] = float(self._loss_sum) / self._loss_count
        self._loss_sum, self._loss_count = None, 0
        now, tokens = time.perf_counter(), self.trained.tokens
        flops = metrics["progress/flops_full"]
        if self._last_log is not None and step > self._last_log[1]:
            seconds = max(now - self._last_log[0], 1e-9)
            metrics["perf/tokens_per_s"] = (tokens - self._last_log[2]) / seconds
            if self.peak_flops:
                metrics["perf/mfu"] = mfu(flops - self._last_log[3], seconds, self.peak_flops)
        self._last_log = (now, step, tokens, flops)
        metrics["lr"] = self.optimizers().param_groups[0]["lr"]  # type: ignore[union-attr]
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "samples_consumed_to_epochs"):
            samples = step * self.tokens_per_step // self.cfg.data.seq_len
            metrics["progress/data_epochs"] = float(datamodule.samples_consumed_to_epochs(samples))
        self._interval = (step, metrics)
        return metrics

    def progress_metrics(self, step: int) -> dict[str, float]:
        """Tokens and cumulative training FLOPs (both conventions) actually trained in `step` optimizer steps.

        Random-length micro-batches count at their own length L, in tokens and in the attention term of the
        "full" convention (`flops.training_flops`).
        """
        trained = self.trained if self.trained.steps == step else self.count_trained(step)
        metrics = {"progress/tokens": float(trained.tokens), "progress/step": float(step)}
        for convention in self.flops_per_token:
            flops = training_flops(self.cfg.model, trained.tokens, trained.token_context, convention)
            metrics[f"progress/flops_{convention}"] = flops
        return metrics

    def _flops_full(self) -> float:
        """Training FLOPs (full convention) of what has been trained so far."""
        return training_flops(self.cfg.model, self.trained.tokens, self.trained.token_context, "full")

    def _peak_flops(self) -> float | None:
        """Peak FLOP/s of all devices: train.peak_flops per device, else the GPU's dense bf16 peak (hardware.py),
        else None (no MFU is logged)."""
        from llada_lightning.hardware import device_peak_flops

        per_device = self.cfg.train.peak_flops or device_peak_flops(self.device)
        world = self.trainer.world_size if self._trainer is not None else 1
        return per_device * world if per_device else None

    def wall_time(self) -> float:
        return self.wall_time_before + (time.perf_counter() - self._fit_start)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["llada_wall_time"] = self.wall_time()
        checkpoint["llada_initial_val"] = self.initial_val
        checkpoint["llada_trained"] = dataclasses.asdict(self.trained)  # saved at a step boundary: complete steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.wall_time_before = float(checkpoint.get("llada_wall_time", 0.0))
        self.initial_val = dict(checkpoint.get("llada_initial_val", {}))
        # absent in older checkpoints: the first training step then recounts from the seeds
        self.trained = TrainedTokens(**checkpoint.get("llada_trained", {}))

    # -- validation -------------------------------------------------------------------------------------
    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        gen = self._generator(VALIDATION_SEED, batch_idx, self.global_rank)
        if isinstance(batch, dict):  # SFT: the held-out answers given their prompts
            nll, n_tokens = self.objective.sft_validation_nll(
                self.model, batch["input_ids"], batch["prompt_lengths"], batch["answer_lengths"], gen
            )
        else:
            nll, n_tokens = self.objective.validation_nll(self.model, batch, gen)
        self.val_nll.update(nll.detach().double())
        self.val_tokens.update(torch.tensor(float(n_tokens), dtype=torch.float64, device=self.device))

    def on_validation_epoch_end(self) -> None:
        n = self.val_tokens.compute()
        if float(n) == 0.0:
            return
        loss = self.val_nll.compute() / n
        self.val_nll.reset()
        self.val_tokens.reset()
        bytes_per_token = self.trainer.datamodule.bytes_per_token("val")  # type: ignore[attr-defined]
        bpb = loss / (math.log(2.0) * bytes_per_token)  # bits per byte = nats/token / ln 2 / (bytes/token)
        self.last_val = {"val_loss": float(loss), "val_bpb": float(bpb), "step": int(self.global_step)}
        self._log_scalars({"val/loss": float(loss), "val/bpb": float(bpb)})  # at the steps completed, as training
        self.log("val/loss", loss.float(), prog_bar=True, logger=False, sync_dist=False)
        self.log("val/bpb", bpb.float(), logger=False, sync_dist=False)

    # -- optimisation -----------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        t = self.cfg.train
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim < 2]
        groups = [
            {"params": decay, "weight_decay": t.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), eps=t.adam_eps)
        warmup = warmup_steps(self.total_steps, t.warmup_fraction, t.warmup_min_steps)

        def multiplier(step: int) -> float:
            return lr_multiplier(
                step,
                total_steps=self.total_steps,
                warmup=warmup,
                schedule=t.lr_schedule,
                min_ratio=t.min_lr_ratio,
                decay_fraction=t.decay_fraction,
            )

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class LLaDAModule(BaseModule):
    """Masked diffusion LM (LLaDA): bidirectional backbone, masked-token ELBO objective (Nie et al. 2025)."""

    objective_name = "llada"


class ARMModule(BaseModule):
    """The matched autoregressive baseline: the same backbone with the causal mask (SMDM pretrain/train_ar.py)."""

    objective_name = "arm"


MODULES: dict[str, type[BaseModule]] = {m.objective_name: m for m in (LLaDAModule, ARMModule)}


def build_module(cfg: RunConfig) -> BaseModule:
    """The LightningModule for `cfg.objective.name` (the names are the objective registry's)."""
    return MODULES[cfg.objective.name](cfg)
