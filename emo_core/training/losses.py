"""Diffusion training targets and losses: epsilon / v targets, noise offset, Min-SNR per sample.

Shapes: ``latents: (b, f, c, h, w)`` (frames of one sample share one timestep), ``timesteps: (b,)``.
"""

from __future__ import annotations

import torch


def sample_noise(latents: torch.Tensor, noise_offset: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian noise like ``latents: (b, f, c, h, w)``.

    ``noise_offset`` adds a per-(sample, channel) constant (same for all frames and pixels), the
    trick that lets SD-style models learn very dark / bright images: plain noise never moves the
    mean of a channel, so the model never learns to change it.
    """
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
    if noise_offset:
        shape = (latents.shape[0], 1, latents.shape[2], 1, 1)
        noise = noise + noise_offset * torch.randn(shape, generator=generator)
    return noise.to(latents.device, latents.dtype)


def _alphas(scheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """Cumulative alpha-bar at ``timesteps: (b,)`` -> ``(b,)`` float32."""
    alphas = scheduler.alphas_cumprod.to(device=timesteps.device, dtype=torch.float32)
    return alphas[timesteps]


def add_noise(scheduler, latents: torch.Tensor, noise: torch.Tensor,
              timesteps: torch.Tensor) -> torch.Tensor:
    """``sqrt(a) x + sqrt(1 - a) eps`` per sample; ``latents, noise: (b, f, c, h, w)``."""
    alpha = _alphas(scheduler, timesteps).view(-1, 1, 1, 1, 1)
    return (alpha.sqrt() * latents.float() + (1 - alpha).sqrt() * noise.float()).to(latents.dtype)


def training_target(scheduler, latents, noise, timesteps, prediction_type: str) -> torch.Tensor:
    """What the Backbone must predict: ``eps`` or ``v = sqrt(a) eps - sqrt(1 - a) x``."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        alpha = _alphas(scheduler, timesteps).view(-1, 1, 1, 1, 1)
        return (alpha.sqrt() * noise.float() - (1 - alpha).sqrt() * latents.float()).to(noise.dtype)
    raise ValueError(
        f"prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")


def snr(scheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ``a / (1 - a)`` per timestep: ``(b,)``."""
    alpha = _alphas(scheduler, timesteps)
    return alpha / (1 - alpha)


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float,
                    prediction_type: str) -> torch.Tensor:
    """Min-SNR-gamma loss weights ``(b,)`` (Hang et al. 2023), one per sample.

    For an epsilon target the weight is ``min(SNR, gamma) / SNR``; for v it is
    ``min(SNR, gamma) / (SNR + 1)`` (the v loss already carries a factor ``SNR + 1``).
    """
    ratio = snr(scheduler, timesteps)
    clipped = torch.minimum(ratio, torch.full_like(ratio, float(gamma)))
    if prediction_type == "v_prediction":
        return clipped / (ratio + 1)
    return clipped / ratio


def diffusion_loss(prediction: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor,
                   scheduler, snr_gamma: float = 0.0,
                   prediction_type: str = "epsilon") -> torch.Tensor:
    """Scalar loss: per-sample MSE over ``(f, c, h, w)``, Min-SNR-weighted when ``snr_gamma > 0``,
    then averaged over the batch. ``prediction, target: (b, f, c, h, w)``."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target "
                         f"{tuple(target.shape)} differ in shape")
    per_sample = (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    if snr_gamma > 0:
        per_sample = per_sample * min_snr_weights(scheduler, timesteps, snr_gamma, prediction_type)
    return per_sample.mean()
