"""Reference image -> VAE latents used by ReferenceNet for every clip."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import EMOInputError
from ..families.base import LatentFormat


def vae_format(vae) -> LatentFormat:
    """The latent format of an SD VAE (its ``scaling_factor``)."""
    return LatentFormat(float(vae.config.scaling_factor))


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
    latents = vae_format(vae).process_in(vae.encode(pixels).latent_dist.mode())
    return EncodedReference(latents=latents, image=image)
