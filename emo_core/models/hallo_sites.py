"""Hallo-variant site runner: Hallo's audio module, then the motion module, per Hallo's rules.

Which motion modules run, and with which motion-frame features, follows the denoiser state that
Hallo's released inference uses (``motion_mode``):

* ``"train"`` (Hallo's default: training mode + gradient checkpointing): after a spatial
  transformer the motion module gets the ReferenceNet's motion-frame features prepended; the
  motion modules of blocks without attention (SD1.5: ``down_blocks.3``, ``up_blocks.0``) are
  skipped entirely.
* ``"eval"`` (the cleaner behaviour, ``.eval()``): every motion module runs; only the mid block
  prepends motion-frame features.
"""

from __future__ import annotations

import torch
from einops import repeat

from .conditioning import BackboneCall
from .sites import SiteHook

MOTION_MODES = ("train", "eval")


def mask_depth(block_name: str, num_down: int, num_up: int) -> int:
    """Hallo's mask-list index for a block: ``down_blocks.i`` -> i, mid -> last, ``up_blocks.j``
    -> ``num_up - 1 - j`` (index i is the ``latent / 2**i`` resolution)."""
    if block_name == "mid_block":
        return num_down - 1
    kind, index = block_name.split(".")
    return int(index) if kind == "down_blocks" else num_up - 1 - int(index)


class HalloSiteRunner(SiteHook):
    """One site of a Hallo-variant Backbone (see module docstring)."""

    call_type = BackboneCall

    def __init__(self, index: int, motion, audio, spatial: bool, mid: bool):
        self.index = index
        self.motion = motion
        self.audio = audio
        self.spatial = spatial
        self.mid = mid

    def __call__(self, hidden: torch.Tensor, call: BackboneCall) -> torch.Tensor:
        hallo = call.hallo
        if self.audio is not None and call.audio is not None:
            hidden = self.audio(hidden, call.audio, hallo.masks, hallo.motion_scale)
        mode = hallo.motion_mode
        if not self.spatial and mode == "train":
            return hidden
        motion = None
        if self.spatial and call.motion is not None and (mode == "train" or self.mid):
            motion = call.motion[self.index]
        return self.motion(hidden, call.frames, motion, call.speed)


def expand_masks(masks, batch: int, frames: int, device, dtype):
    """``(full, face, lip)`` lists of per-level masks ``(hw,) | (f, hw) | (b, f, hw)`` ->
    lists of ``(b*f, hw)``."""
    if masks is None:
        raise ValueError("a Hallo-variant Backbone needs audio_masks = (full, face, lip) lists")
    if len(masks) != 3:
        raise ValueError(f"audio_masks must hold 3 lists (full, face, lip), got {len(masks)}")
    out = []
    for regional in masks:
        levels = []
        for mask in regional:
            mask = torch.as_tensor(mask).to(device=device, dtype=dtype)
            if mask.ndim == 1:
                mask = repeat(mask, "d -> (b f) d", b=batch, f=frames)
            elif mask.ndim == 2:
                mask = repeat(mask, "f d -> (b f) d", b=batch)
            else:
                mask = mask.flatten(0, 1)
            levels.append(mask)
        out.append(levels)
    return out
