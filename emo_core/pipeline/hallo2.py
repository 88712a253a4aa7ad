"""Hallo2's motion-frame masking (``scripts/inference_long.py`` with ``use_mask: true``).

Before every clip, the first included, Hallo2 draws ONE keep mask for the clip's motion frames
from the same generator as the clip's initial noise, and draws it first:

1. ``rand = torch.rand(H, W)`` at image resolution (float32, CPU generator);
2. ``keep = (rand > mask_rate) | face_region != 0`` per channel (the face box is always kept;
   any non-zero face-region value counts);
3. ``motion = motion * keep``: masked pixels become exactly 0, mid-grey in [-1, 1] space; the
   same mask for every motion frame and channel; the reference frame is never masked;
4. then ``randn(1, 4, f, h, w)``: the clip's initial noise.

The motion frames are pixels in [-1, 1]: for the first clip the reference image repeated, later
the last ``n`` decoded frames of the previous clip mapped back to [-1, 1]. The masked frames are
then VAE-encoded (posterior mean x latent scale) like Hallo's. With ``mask_rate`` 0.25 about 75 %
of the pixels outside the face are kept.
"""

from __future__ import annotations

import torch


def draw_motion_mask(generator: torch.Generator, height: int, width: int) -> torch.Tensor:
    """Hallo2's draw for one clip: ``torch.rand(H, W)`` (float32) from ``generator``, before the
    clip's noise. ``(H, W)`` on the generator's device."""
    return torch.rand((height, width), generator=generator, device=generator.device)


def keep_mask(draw: torch.Tensor, face_region: torch.Tensor, mask_rate: float,
              keep_face: bool = True) -> torch.Tensor:
    """``draw (H, W)``, ``face_region (1, 3, H, W)`` (Hallo's, 0/1) -> keep mask ``(3, H, W)``
    bool on ``face_region``'s device: ``draw > mask_rate``, OR the face region per channel."""
    keep = (draw.to(face_region.device) > mask_rate)[None].expand(face_region.shape[1], -1, -1)
    return keep | face_region[0].bool() if keep_face else keep


def mask_motion_pixels(pixels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``pixels: (n, 3, H, W)`` in [-1, 1] x ``keep (3, H, W)`` bool -> masked pixels (0 where
    not kept), same dtype."""
    return pixels * keep.to(pixels.dtype)
