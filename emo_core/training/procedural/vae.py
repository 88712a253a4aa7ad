"""Fit the tiny ``AutoencoderKL`` to cartoon faces (the proof's fixed VAE; SD1.5 has its own).

A randomly initialised VAE decodes noise, so frames measured after generation would say nothing;
a few hundred steps on rendered faces give a VAE that reconstructs colours, mouth and head angle
well enough to measure them, after which it is frozen for all three stages.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from .clips import MAX_ANGLE
from .faces import random_identity, render_face

logger = logging.getLogger(__name__)


def random_faces(rng: np.random.Generator, count: int, size: int) -> torch.Tensor:
    """``(count, 3, size, size)`` in [-1, 1]: random identities, openings and angles."""
    frames = [render_face(random_identity(rng), rng.uniform(0, 1),
                          rng.uniform(-MAX_ANGLE, MAX_ANGLE), size) for _ in range(count)]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def fit_vae(vae, steps: int, size: int = 64, batch: int = 16, lr: float = 2e-3,
            kl_weight: float = 1e-6, seed: int = 0) -> list[float]:
    """Train ``vae`` in place (reconstruction MSE + a small KL term); returns the MSE per step."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr * 0.05)
    vae.train()
    losses, started = [], time.time()
    for step in range(steps):
        pixels = random_faces(rng, batch, size)
        posterior = vae.encode(pixels).latent_dist
        recon = vae.decode(posterior.sample()).sample
        mse = (recon - pixels).pow(2).mean()
        loss = mse + kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(mse.item())
        if step % 50 == 0 or step == steps - 1:
            logger.info("vae step %d/%d: mse %.4f (%.1f s)", step + 1, steps, mse,
                        time.time() - started)
    vae.eval().requires_grad_(False)
    return losses


@torch.no_grad()
def latent_scale(vae, size: int = 64, count: int = 64, seed: int = 1) -> float:
    """1 / std of the latents, so diffusion sees unit-variance latents (SD's 0.18215 idea)."""
    pixels = random_faces(np.random.default_rng(seed), count, size)
    return float(1.0 / vae.encode(pixels).latent_dist.mode().std())
