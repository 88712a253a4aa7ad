"""Where EMO's extra layers sit inside a diffusers ``UNet2DConditionModel`` (shared by both nets).

Temporal sites follow AnimateDiff v2 (21 for SD1.5 topology): after each spatial transformer of a
cross-attention block, after each resnet of a block without attention, and after the mid-block
transformer. Audio sites are the spatial-transformer sites (16). Layers are inserted with forward
hooks on those carriers, so no diffusers block code is copied; the hooks are bound methods of small
plain objects so ``copy.deepcopy`` of a model remaps them onto the copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention
from torch import nn


@dataclass(frozen=True)
class Site:
    """One insertion point: output of ``carrier`` = ``block.attentions[index]`` or ``resnets``."""

    block_name: str  # "down_blocks.0", "mid_block", "up_blocks.3"
    block: nn.Module
    index: int
    carrier: nn.Module
    channels: int
    spatial: bool  # True: carrier is a spatial transformer (audio site too)


def unet_blocks(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    """``[(name, block)]`` in execution order: down blocks, mid block, up blocks."""
    blocks = [(f"down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks)]
    blocks.append(("mid_block", unet.mid_block))
    blocks += [(f"up_blocks.{i}", b) for i, b in enumerate(unet.up_blocks)]
    return blocks


def unet_sites(unet: nn.Module) -> list[Site]:
    """Temporal sites in Backbone execution order (21 for the SD1.5 block layout)."""
    sites = []
    for name, block in unet_blocks(unet):
        attentions = getattr(block, "attentions", None)
        carriers = list(attentions) if attentions else list(block.resnets)
        for index, carrier in enumerate(carriers):
            spatial = bool(attentions)
            channels = carrier.config.in_channels if spatial else carrier.out_channels
            sites.append(Site(name, block, index, carrier, int(channels), spatial))
    return sites


def attn1_names(unet: nn.Module) -> list[str]:
    """Names of every spatial self-attention (``...transformer_blocks.0.attn1``), in order."""
    return [name for name, module in unet.named_modules()
            if name.endswith(".attn1") and isinstance(module, Attention)]


def replace_output(output, fn: Callable[[torch.Tensor], torch.Tensor]):
    """Apply ``fn`` to the sample inside a block output (tensor, tuple or ``*Output``)."""
    if isinstance(output, torch.Tensor):
        return fn(output)
    if isinstance(output, tuple):
        return (fn(output[0]), *output[1:])
    output.sample = fn(output.sample)
    return output


class SiteHook:
    """Base of the Backbone's per-site forward hooks: while the Backbone's call state is active,
    ``apply`` (the subclass's per-site work on ``(b*f, c, h, w)``) replaces the block's sample;
    outside a Backbone call the plain 2D UNet output passes unchanged."""

    state: object  # the Backbone's per-call state (``active`` and the site inputs)

    def hook(self, module, args, output):
        if not self.state.active:
            return output
        return replace_output(output, self.apply)

    def apply(self, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
