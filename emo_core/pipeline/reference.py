"""Reference image -> VAE latents used by ReferenceNet for every clip."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import EMOInputError


@dataclass(frozen=True)
class EncodedReference:
    """``latents: (1, 4, S/8, S/8)`` (scaled by the VAE factor); ``image: (S, S, 3)`` uint8."""

    latents: torch.Tensor
    image: np.ndarray

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float in [-1, 1]."""
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
            and image.dtype == np.uint8):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise EMOInputError(f"reference image must be (H, W, 3) uint8, got shape {shape} {dtype}")
    tensor = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None]  # own, writable
    return tensor.float() / 127.5 - 1.0


@torch.no_grad()
def encode_reference(models, image: np.ndarray, device=None, dtype=None) -> EncodedReference:
    """Encode the square face crop with the bundle's VAE (mean of the posterior, no sampling)."""
    if models.vae is None:
        raise EMOInputError("the EMO checkpoint has no VAE inside; pass a VAE (e.g. sd-vae-ft-mse)")
    height, width = image.shape[:2]
    if height != width or height % 64:
        raise EMOInputError(
            f"reference image must be square with a side divisible by 64, got {width}x{height}; "
            "crop it with emo_core.face.crop first"
        )
    vae = models.vae
    device = device or next(vae.parameters()).device
    dtype = dtype or next(vae.parameters()).dtype
    pixels = image_to_tensor(image).to(device=device, dtype=dtype)
    latents = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
    return EncodedReference(latents=latents, image=image)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, batch: int):
    """``latents: (k, 4, h, w)`` -> yields ``(j, 8h, 8w, 3)`` uint8 numpy, ``batch`` frames at a time."""
    for start in range(0, latents.shape[0], batch):
        chunk = latents[start:start + batch] / vae.config.scaling_factor
        pixels = vae.decode(chunk).sample
        pixels = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        yield pixels.permute(0, 2, 3, 1).cpu().numpy()
