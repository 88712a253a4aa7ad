"""Where EMO's extra layers sit inside a diffusers ``UNet2DConditionModel`` (shared by both nets).

Temporal sites follow AnimateDiff v2 (21 for SD1.5 topology): after each spatial transformer of a
cross-attention block, after each resnet of a block without attention, and after the mid-block
transformer. Audio sites are the spatial-transformer sites (16). Layers run after spatial
transformers through kwargs-aware forward hooks and after resnets of attention-free blocks through
the motion-block wrappers (``motion_blocks.py``); both read the call's conditioning from
``cross_attention_kwargs`` (``conditioning.py``). The hooks are bound methods of small plain
objects so ``copy.deepcopy`` of a model remaps them onto the copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from .conditioning import call_of


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
    """Per-site work of one network (subclasses: the Backbone's audio + motion runners, the
    ReferenceNet's motion-feature capture), run after the site's carrier.

    Spatial-transformer sites use ``hook`` (a forward hook registered ``with_kwargs=True``: it
    reads the call's conditioning from the transformer's ``cross_attention_kwargs``); resnet
    sites are run by the motion-block wrappers (``motion_blocks.py``). Without conditioning
    (``backbone.unet`` called alone) the plain 2D UNet output passes unchanged. When the carrier
    has diffusers' ``gradient_checkpointing`` on, the site work is checkpointed with it.
    """

    call_type: type  # the conditioning class this site reads

    def hook(self, module, args, kwargs, output):
        call = call_of(kwargs.get("cross_attention_kwargs"))
        if not isinstance(call, self.call_type):
            return output
        return replace_output(output, lambda hidden: self.run(module, hidden, call))

    def run(self, carrier: nn.Module, hidden: torch.Tensor, call) -> torch.Tensor:
        if torch.is_grad_enabled() and getattr(carrier, "gradient_checkpointing", False):
            return carrier._gradient_checkpointing_func(self, hidden, call)
        return self(hidden, call)

    def __call__(self, hidden: torch.Tensor, call) -> torch.Tensor:
        """``hidden: (b*f, c, h, w)`` -> the sample that replaces the carrier's output."""
        raise NotImplementedError


def install_site(site: Site, runner: SiteHook) -> None:
    """Run ``runner`` after ``site``: a kwargs-aware forward hook on a spatial transformer, or a
    slot in the block's motion-block wrapper for a resnet site."""
    from .motion_blocks import as_motion_block

    if site.spatial:
        site.carrier.register_forward_hook(runner.hook, with_kwargs=True)
        return
    block = as_motion_block(site.block)
    block.emo_sites[site.index] = runner
