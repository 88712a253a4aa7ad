"""Shared by the core benchmarks and tests: tiny EMO models with every branch non-zero, and the
inputs of one stage-2 training step / one guided sampling step.

A fresh EMO model starts with zero output projections (motion, audio, speed, face, context), so
most of it would compute nothing; ``nonzero_models`` fills every all-zero tensor with small
random values so each branch contributes to outputs and gradients.
"""

from __future__ import annotations

import torch

from emo_core.models import ReferenceFeatures, build_emo_models


def nonzero_models(seed: int = 0, preset: str = "tiny"):
    """``EMOModels`` (no VAE, fp32) with every zero-initialised tensor randomised (std 0.05)."""
    models = build_emo_models(preset, seed=seed, with_vae=False)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in models.parameters():
            if not param.any():
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    return models


def stage2_inputs(models, batch: int = 2, frames: int = 3, motion: int = 2, latent: int = 8,
                  seed: int = 0) -> dict:
    """Keyword arguments of ``EMOTrainingModule.forward`` for a stage-2 step: motion frames,
    audio windows, face box, and mixed dropout rows (row 0 keeps everything, row 1 drops the
    reference, so both row layouts run)."""
    gen = torch.Generator().manual_seed(seed)
    audio = models.audio_projection.config
    size = latent * 8
    mask = torch.zeros(batch, 1, size, size)
    mask[..., size // 4:3 * size // 4, size // 4:3 * size // 4] = 1
    keep = torch.tensor([i % 2 == 0 for i in range(batch)])
    return dict(
        noisy=torch.randn(batch, frames, 4, latent, latent, generator=gen),
        timesteps=torch.randint(0, 1000, (batch,), generator=gen),
        reference_latents=torch.randn(batch, 4, latent, latent, generator=gen),
        motion_latents=torch.randn(batch, motion, 4, latent, latent, generator=gen),
        mask=mask,
        audio=torch.randn(batch, frames, audio.seq_len, audio.blocks, audio.channels,
                          generator=gen),
        speed=None, reference_rows=keep, audio_rows=torch.ones(batch, dtype=torch.bool),
        motion_keep=torch.ones(batch, dtype=torch.bool))


def loss_weights(shape, seed: int = 3) -> torch.Tensor:
    """Fixed random weights: ``(prediction * w).sum()`` reaches every output element."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def sampling_inputs(models, rows: tuple[bool, ...], audio_rows: tuple[bool, ...],
                    frames: int = 3, motion: int = 2, latent: int = 8, seed: int = 0) -> dict:
    """``(reference_net kwargs, backbone kwargs)`` of one guided sampling step (batch = rows)."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(rows)
    audio = models.audio_projection.config
    reference = dict(reference_latents=torch.randn(1, 4, latent, latent, generator=gen),
                     motion_latents=torch.randn(1, motion, 4, latent, latent, generator=gen),
                     context=models.context)
    windows = torch.randn(1, frames, audio.seq_len, audio.blocks, audio.channels, generator=gen)
    with torch.no_grad():
        tokens = models.audio_projection(windows)
        speed = models.speed_encoder(torch.full((1, frames), 3.0))
        size = latent * 8
        face = models.face_locator(torch.ones(1, 1, size, size))
    backbone = dict(
        sample=torch.randn(batch, frames, 4, latent, latent, generator=gen),
        reference_rows=rows, audio_tokens=tokens.expand(batch, *tokens.shape[1:]),
        audio_rows=audio_rows, speed_tokens=speed.expand(batch, *speed.shape[1:]),
        face_embedding=face.expand(batch, *face.shape[1:]),
        context=models.context.expand(batch, -1, -1))
    return reference, backbone


def broadcast(features: ReferenceFeatures, batch: int) -> ReferenceFeatures:
    """ReferenceNet output of one row broadcast to ``batch`` guidance rows (views)."""
    bank = {k: v.expand(batch, *v.shape[1:]) for k, v in features.bank.items()}
    motion = None if features.motion is None else [m.expand(batch, *m.shape[1:])
                                                   for m in features.motion]
    return ReferenceFeatures(bank=bank, motion=motion)
