"""One training forward: noisy target latents + conditions -> Backbone prediction, and its loss.

``EMOTrainingModule`` wraps ``EMOModels`` so that ``accelerate``/DDP sees one ``forward`` per step
(DDP only synchronises gradients of modules called through the wrapper's forward).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .config import DropoutConfig, TrainConfig
from .losses import add_noise, diffusion_loss, sample_noise, training_target

logger = logging.getLogger(__name__)


def dropout_rows(batch: int, rates: DropoutConfig, generator: torch.Generator):
    """Per-sample condition dropout -> ``(reference_rows, audio_rows, motion_rows)``, ``(b,)`` bool.

    ``True`` keeps the condition. Reference-only, audio-only and both-dropped are exclusive events
    drawn from one uniform number; motion dropout is drawn independently.
    """
    u = torch.rand(batch, generator=generator)
    drop_ref = u < rates.reference
    drop_audio = (u >= rates.reference) & (u < rates.reference + rates.audio)
    drop_both = (u >= rates.reference + rates.audio) & (u < rates.reference + rates.audio
                                                         + rates.both)
    motion_keep = torch.rand(batch, generator=generator) >= rates.motion
    return ~(drop_ref | drop_both), ~(drop_audio | drop_both), motion_keep


class EMOTrainingModule(nn.Module):
    """``forward(noisy (b, f, 4, h, w), timesteps (b,), conditions) -> prediction (b, f, 4, h, w)``.

    ``gradient_checkpointing`` turns on diffusers' per-block checkpointing in the ReferenceNet
    and the Backbone (``enable_gradient_checkpointing``): every resnet, transformer block and EMO
    site is recomputed in backward. The conditioning travels in the call's arguments, so the
    recomputation sees the same inputs.
    """

    def __init__(self, models, stage: int, gradient_checkpointing: bool = False):
        super().__init__()
        from ..families import family_of

        self.models = models
        self.family = family_of(models)  # its training forward (families/<name>.py)
        self.stage = stage
        self.gradient_checkpointing = gradient_checkpointing
        for net in (models.reference_net, models.backbone):
            if gradient_checkpointing:
                net.enable_gradient_checkpointing()
            else:
                net.disable_gradient_checkpointing()

    def forward(self, noisy, timesteps, reference_latents, motion_latents, mask, audio, speed,
                reference_rows, audio_rows, motion_keep):
        """``reference_latents: (b, 4, h, w)``, ``motion_latents: (b, n, 4, h, w) | None``,
        ``mask: (b, 1, H, W)``, ``audio: (b, f, 2m+1, L, C) | None``, ``speed: (b, f) | None``,
        rows: ``(b,)`` bool."""
        return self.family.training_forward(noisy, timesteps, reference_latents, motion_latents,
                                            mask, audio, speed, reference_rows, audio_rows,
                                            motion_keep)


@torch.no_grad()
def encode_frames(vae, pixels: torch.Tensor) -> torch.Tensor:
    """``pixels: (..., 3, S, S)`` in [-1, 1] -> ``(..., 4, S/8, S/8)`` scaled latents (posterior
    mean: the sample's noise would only add variance the diffusion noise already provides)."""
    lead = pixels.shape[:-3]
    flat = pixels.reshape(-1, *pixels.shape[-3:])
    latents = vae.encode(flat.to(next(vae.parameters()).dtype)).latent_dist.mode()
    latents = latents * vae.config.scaling_factor
    return latents.reshape(*lead, *latents.shape[1:]).float()


def batch_latents(models, batch: dict) -> dict:
    """Replace pixel tensors by latents when the data was stored as frames."""
    if not bool(batch["pixel_space"].any()):
        return batch
    if models.vae is None:
        raise ValueError("the data holds pixel frames but the EMO checkpoint has no VAE to "
                         "encode them; use a checkpoint with a VAE")
    out = dict(batch)
    for key in ("reference", "target", "motion"):
        if key in out:
            out[key] = encode_frames(models.vae, out[key])
    return out


def compute_loss(module, models, batch: dict, scheduler, config: TrainConfig,
                 generator: torch.Generator, shard: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """Sample t, noise and dropout from ``generator``; return the scalar training loss.

    ``shard = (rank, world)``: ``batch`` is rows ``rank*b:(rank+1)*b`` of a global batch of
    ``world*b``. Every rank draws the randomness of the whole global batch from the same
    generator and keeps its rows, so a sample gets the same t, noise and dropout whatever the
    number of processes (and one process draws exactly what it always drew).
    """
    batch = batch_latents(models, batch)
    target_latents = batch["target"]  # (b, f, 4, h, w)
    size = target_latents.shape[0]
    rank, world = shard
    rows, total = slice(rank * size, (rank + 1) * size), size * world
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (total,),
                              generator=generator)[rows].to(target_latents.device)
    # A (world*b, f, 4, h, w) view of the first sample: only its shape, dtype and device are read.
    template = target_latents[:1].expand(total, *target_latents.shape[1:])
    noise = sample_noise(template, config.noise_offset, generator)[rows]
    noisy = add_noise(scheduler, target_latents, noise, timesteps)
    ref_rows, audio_rows, motion_keep = (r[rows].to(target_latents.device)
                                         for r in dropout_rows(total, config.dropout, generator))
    video = config.stage > 1
    prediction = module(
        noisy, timesteps, batch["reference"], batch.get("motion") if video else None,
        batch["mask"], batch["audio"] if video else None,
        batch["speed"] if config.stage == 3 else None, ref_rows, audio_rows, motion_keep)
    target = training_target(scheduler, target_latents, noise, timesteps, config.prediction_type)
    return diffusion_loss(prediction, target, timesteps, scheduler, config.snr_gamma,
                          config.prediction_type)
