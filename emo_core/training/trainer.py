"""The EMO training loop on Hugging Face ``accelerate``: one CPU, one GPU or many (DDP, or FSDP /
DeepSpeed through ``accelerate config``), mixed precision, gradient accumulation, optional 8-bit
Adam, EMA (diffusers ``EMAModel``), exact resume and TensorBoard logs.

Each stage starts from an EMO checkpoint (stage 1 from ``init-checkpoint``, later stages from the
previous stage's ``emo.safetensors`` / ``emo_ema.safetensors``) or, for tests, a preset.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader

from ..errors import EMOInputError
from ..pipeline.scheduler import make_scheduler
from .checkpointing import (
    check_folder_paths,
    latest_checkpoint,
    load_training_state,
    publish_folder,
    save_training_state,
)
from .config import TrainConfig
from .dataset import TrainSamples
from .stages import apply_stage
from .step import EMOTrainingModule, compute_loss

logger = logging.getLogger(__name__)


def build_models(config: TrainConfig):
    """``EMOModels`` from the config's checkpoint (or preset), float32 on CPU, VAE frozen."""
    if config.preset:
        from ..models.presets import build_emo_models

        models = build_emo_models(config.preset, seed=config.seed)
    else:
        from ..io.emo_checkpoint import load_emo_checkpoint

        models = load_emo_checkpoint(config.init_checkpoint)
    if config.stage > 1 and config.frames + config.motion_frames > \
            models.backbone.config.motion_max_frames:
        raise EMOInputError(f"frames + motion_frames = {config.frames + config.motion_frames} "
                            f"exceeds the model's {models.backbone.config.motion_max_frames}")
    if models.prediction_type != config.prediction_type:
        logger.warning("the starting checkpoint predicts %s; this stage trains (and its "
                       "checkpoints record) %s", models.prediction_type, config.prediction_type)
    # Saved checkpoints carry what they were trained for, so samplers use the right target.
    models.prediction_type = config.prediction_type
    return models.float()


def noise_scheduler(models, config: TrainConfig):
    """The training noise schedule: the one a checkpoint's sampling config names (Hallo: zero
    terminal SNR, v-prediction), else SD1.5's DDIM with the config's target."""
    scheduler = (getattr(models, "sampling", None) or {}).get("scheduler")
    if not scheduler:
        return make_scheduler("ddim", config.prediction_type)
    from diffusers import DDIMScheduler

    wanted = scheduler.get("prediction_type", "epsilon")
    if wanted != config.prediction_type:
        raise EMOInputError(f"the checkpoint was trained with prediction_type {wanted!r} on its "
                            f"own noise schedule; set prediction_type: {wanted} in the config "
                            f"(it says {config.prediction_type!r})")
    return DDIMScheduler.from_config(scheduler)


def make_optimizer(parameters, config: TrainConfig):
    """AdamW, or bitsandbytes 8-bit AdamW when ``use_8bit_adam`` (imported only then)."""
    if config.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise EMOInputError("use_8bit_adam is set but bitsandbytes is not installed; "
                                "`pip install bitsandbytes` or set use_8bit_adam: false") from None
        optimizer_class = bnb.optim.AdamW8bit
    else:
        optimizer_class = torch.optim.AdamW
    return optimizer_class(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)


class Trainer:
    """``Trainer(config).train()`` runs ``config.max_steps`` optimizer steps of ``config.stage``."""

    def __init__(self, config: TrainConfig, models=None, resume: str | Path | None = None,
                 log_with: str | None = "tensorboard", cpu: bool = False):
        self.config = config.validate()
        self.output_dir = Path(config.output_dir)
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise EMOInputError(f"config output_dir {str(self.output_dir)!r} is a file; set it "
                                "to a folder (it is created if missing)")
        self.accelerator = Accelerator(
            cpu=cpu, mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation,
            log_with=log_with, project_dir=str(self.output_dir),
            # A DDP rank whose whole batch drew "drop reference" leaves ReferenceNet unused.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        torch.manual_seed(config.seed)
        self.models = models if models is not None else build_models(config)
        if self.models.vae is not None:
            self.models.vae.requires_grad_(False).eval()
        trainable = apply_stage(self.models, config.stage, config.stage2_trains_spatial)
        self.parameters = [p for _, p in trainable]
        self.module = EMOTrainingModule(self.models, config.stage, config.gradient_checkpointing)
        optimizer = make_optimizer(self.parameters, config)
        self.module, self.optimizer = self.accelerator.prepare(self.module, optimizer)
        # Not prepared: accelerate would step it once per process per optimizer step; warmup
        # counts optimizer steps of the global batch, whatever the number of processes.
        self.lr_scheduler = get_scheduler("constant_with_warmup", optimizer,
                                          num_warmup_steps=config.warmup_steps)
        self.ema = EMAModel(self.parameters, decay=config.ema_decay) if config.ema else None
        self.noise_scheduler = noise_scheduler(self.models, config)
        # The same generator on every rank: each draws the global batch's randomness and keeps
        # its rows (compute_loss), so ranks never need their own RNG state.
        self.generator = torch.Generator().manual_seed(config.seed * 7919)
        self.step, self.samples = 0, 0  # samples: of the global batch, all processes together
        self._log_setup()
        if resume:
            self._resume(resume)
        if log_with and self.accelerator.is_main_process:
            hparams = {k: v for k, v in dataclasses.asdict(config).items()
                       if isinstance(v, (int, float, str, bool))}
            self.accelerator.init_trackers(f"stage{config.stage}", config=hparams)

    def _log_setup(self) -> None:
        acc = self.accelerator
        if acc.is_main_process:
            backend = f", {acc.state.backend}" if acc.state.backend else ""
            logger.info("%d process(es) (%s%s), global batch %d = %d x %d", acc.num_processes,
                        acc.distributed_type.value, backend, self.global_batch,
                        acc.num_processes, self.config.batch_size)

    # ------------------------------------------------------------------ data
    def _batches(self):
        """Infinite iterator over this rank's rows of the global batches, fast-forwarded past
        the samples already consumed."""
        config, acc = self.config, self.accelerator
        dataset = TrainSamples(config.data, config.clip_frames, config.clip_motion_frames,
                               seed=config.seed, rank=acc.process_index,
                               world=acc.num_processes, per_rank=config.batch_size)
        loader = DataLoader(dataset, batch_size=config.batch_size,
                            num_workers=config.num_workers)
        batches = iter(loader)
        skip = self.samples // self.global_batch
        if skip:
            logger.info("resume: skipping %d batches already trained on", skip)
            batches = itertools.islice(batches, skip, None)
        for batch in batches:
            yield {k: v.to(self.accelerator.device) for k, v in batch.items()}

    # ------------------------------------------------------------------ loop
    def train(self, max_steps: int | None = None, callback=None) -> list[float]:
        """Run until ``max_steps`` (default: the config's) optimizer steps; returns step losses.

        ``callback(step, loss)`` is called after every optimizer step (tests, progress).
        """
        config, acc = self.config, self.accelerator
        end = config.max_steps if max_steps is None else max_steps
        losses: list[float] = []
        batches = self._batches()
        self.module.train()
        started, accumulated = time.time(), []
        while self.step < end:
            loss = self.train_step(next(batches))
            accumulated.append(loss)
            if not acc.sync_gradients:
                continue
            self.step += 1
            step_loss = sum(accumulated) / len(accumulated)
            accumulated = []
            losses.append(step_loss)
            if self.ema is not None:
                self.ema.step(self.parameters)
            self._log(step_loss, started)
            if callback is not None:
                callback(self.step, step_loss)
            if self.step % config.checkpoint_every == 0 or self.step == end:
                self.save()
        return losses

    def train_step(self, batch: dict, generator: torch.Generator | None = None) -> float:
        """One micro-batch: loss, backward and (when accumulation is complete) an optimizer step.

        ``generator`` overrides the trainer's noise/timestep/dropout generator (tests use a fresh
        fixed one to see the loss of one fixed batch fall)."""
        config, acc = self.config, self.accelerator
        with acc.accumulate(self.module):
            loss = compute_loss(self.module, self.models, batch, self.noise_scheduler, config,
                                generator or self.generator,
                                shard=(acc.process_index, acc.num_processes))
            acc.backward(loss)  # DDP all-reduces (means) the gradients over the processes
            if acc.sync_gradients and config.max_grad_norm > 0:
                acc.clip_grad_norm_(self.parameters, config.max_grad_norm)
            self.optimizer.step()
            if acc.sync_gradients and not self.optimizer.step_was_skipped:
                self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.samples += self.global_batch
        # Every rank holds the mean of its equal share: their mean is the global batch's loss.
        return float(acc.reduce(loss.detach(), reduction="mean"))

    @property
    def global_batch(self) -> int:
        """Samples per micro-batch over all processes."""
        return self.config.batch_size * self.accelerator.num_processes

    def _log(self, loss: float, started: float) -> None:
        lr = self.lr_scheduler.get_last_lr()[0]
        self.accelerator.log({"loss": loss, "lr": lr, "samples": self.samples}, step=self.step)
        if self.accelerator.is_main_process and (self.step % self.config.log_every == 0
                                                 or self.step == 1):
            logger.info("stage %d step %d: loss %.4f lr %.2e (%.2f s/step)", self.config.stage,
                        self.step, loss, lr, (time.time() - started) / max(self.step, 1))

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path:
        """``output_dir/step-N/`` with emo(.ema).safetensors + the exact-resume state, written by
        the main process only (every rank holds the same weights, optimizer and RNG state)."""
        from ..io.emo_checkpoint import save_emo_checkpoint

        acc = self.accelerator
        acc.wait_for_everyone()
        final = self.output_dir / f"step-{self.step:06d}"
        staging = self.output_dir / f".step-{self.step:06d}.tmp"
        if acc.is_main_process:
            # Only this rank writes; if it fails the others stop at the next barrier (the
            # launcher ends them when this process exits), they never wait forever.
            check_folder_paths(staging, final)
            staging.mkdir(parents=True, exist_ok=True)
            models = acc.unwrap_model(self.module).models
            save_emo_checkpoint(models, staging / "emo.safetensors")
            if self.ema is not None:
                self.ema.store(self.parameters)
                self.ema.copy_to(self.parameters)
                save_emo_checkpoint(models, staging / "emo_ema.safetensors")
                self.ema.restore(self.parameters)
            save_training_state(staging, step=self.step, samples=self.samples,
                                optimizer=self.optimizer, lr_scheduler=self.lr_scheduler,
                                ema=self.ema, generator=self.generator)
            publish_folder(staging, final)
            logger.info("saved %s", final)
        acc.wait_for_everyone()
        return final

    def _resume(self, resume) -> None:
        folder = Path(resume)
        if str(resume) == "latest":
            folder = latest_checkpoint(self.output_dir)
            if folder is None:
                logger.info("no checkpoint in %s yet; starting fresh", self.output_dir)
                return
        from ..io.emo_checkpoint import load_emo_checkpoint

        loaded = load_emo_checkpoint(folder / "emo.safetensors")
        models = self.accelerator.unwrap_model(self.module).models
        models.load_state_dict(loaded.state_dict())
        self.step, self.samples = load_training_state(
            folder, optimizer=self.optimizer, lr_scheduler=self.lr_scheduler, ema=self.ema,
            generator=self.generator)
        logger.info("resumed from %s at step %d", folder, self.step)

    def end(self) -> None:
        self.accelerator.end_training()
