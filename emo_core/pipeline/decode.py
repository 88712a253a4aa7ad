"""Model latents -> uint8 frames with the bundle's VAE, a batch at a time."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..families.base import LatentFormat


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, batch: int,
                   fmt: LatentFormat | None = None) -> Iterator[np.ndarray]:
    """``latents: (k, 4, h, w)`` model space -> yields ``(j, 8h, 8w, 3)`` uint8 numpy, ``batch``
    frames at a time (``fmt``: the family's latent format, default the VAE's own scale)."""
    fmt = fmt or LatentFormat(float(vae.config.scaling_factor))
    for start in range(0, latents.shape[0], batch):
        pixels = vae.decode(fmt.process_out(latents[start:start + batch])).sample
        pixels = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        yield pixels.permute(0, 2, 3, 1).cpu().numpy()
