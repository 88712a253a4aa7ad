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
from torch import nn

from .conditioning import BackboneCall, HalloInputs
from .sites import SiteHook, install_site
from .temporal import TemporalModule

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


def install_hallo_sites(backbone, by_block: dict) -> int:
    """Hallo layout: motion module at every site, Hallo audio module at spatial sites; speed
    attention inside the motion modules when ``speed_token_dim`` > 0 (init-checkpoint
    --from-hallo)."""
    from .backbone import heads
    from .hallo_audio_attention import HalloAudioModule

    cfg, unet = backbone.config, backbone.unet
    inner = dict((cfg.hallo or {}).get("audio_inner_dims") or {})  # module name -> width
    groups = unet.config.norm_num_groups
    num_down, num_up = len(unet.down_blocks), len(unet.up_blocks)
    index = 0
    for name, block_sites in by_block.items():
        block = block_sites[0].block
        block.motion_modules = nn.ModuleList(
            TemporalModule(s.channels, cfg.motion_num_attention_heads, cfg.motion_max_frames,
                           cfg.speed_token_dim or None, groups) for s in block_sites)
        if block_sites[0].spatial:
            depth = mask_depth(name, num_down, num_up)
            dims = [inner.get(f"{name}.audio_modules.{j}", s.channels)
                    for j, s in enumerate(block_sites)]
            block.audio_modules = nn.ModuleList(
                HalloAudioModule(s.channels, d, heads(s.carrier), cfg.audio_token_dim,
                                 depth, groups) for s, d in zip(block_sites, dims, strict=True))
        for j, site in enumerate(block_sites):
            audio = block.audio_modules[j] if site.spatial else None
            install_site(site, HalloSiteRunner(index, block.motion_modules[j], audio,
                                               site.spatial, name == "mid_block"))
            index += 1
    return index


def hallo_call_inputs(backbone, with_audio, masks, motion_scale, motion_mode, batch, frames,
                      sample) -> HalloInputs:
    """The checked Hallo inputs of one Backbone call (``BackboneCall.hallo``)."""
    mode = motion_mode or (backbone.config.hallo or {}).get("motion_mode", "train")
    if mode not in MOTION_MODES:
        raise ValueError(f"motion_mode must be one of {MOTION_MODES}, got {mode!r}")
    scale = (1.0, 1.0, 1.0) if motion_scale is None else tuple(float(s) for s in motion_scale)
    if len(scale) != 3:
        raise ValueError(f"motion_scale must hold 3 numbers (full, face, lip), got {scale}")
    expanded = None
    if with_audio:
        expanded = expand_masks(masks, batch, frames, sample.device, sample.dtype)
    return HalloInputs(masks=expanded, motion_scale=scale, motion_mode=mode)
