"""Motion-block wrappers for the UNet blocks without attention (SD1.5: ``down_blocks.3``,
``up_blocks.0``), so their resnet sites receive the call's conditioning.

``UNet2DConditionModel.forward`` passes ``cross_attention_kwargs`` only to blocks whose
``has_cross_attention`` is True, and a resnet gets only ``(hidden, temb)``. diffusers solves the
same problem for AnimateDiff with its own ``DownBlockMotion`` / ``UpBlockMotion``, which re-state
the block loop with a motion module after each resnet; these classes do the same for
``DownBlock2D`` / ``UpBlock2D``, swapped in place (``__class__``, as
``torch.nn.utils.parametrize`` does), so parameters, state-dict names and diffusers' gradient
checkpointing flag are unchanged. The copied part is the resnet loop only (a dozen lines each);
resnets, up/downsamplers and FreeU are diffusers' own.
"""

from __future__ import annotations

import torch
from diffusers.models.unets.unet_2d_blocks import DownBlock2D, UpBlock2D
from diffusers.utils.torch_utils import apply_freeu

from .conditioning import call_of


def _resnet(block, resnet, hidden, temb):
    if torch.is_grad_enabled() and block.gradient_checkpointing:
        return block._gradient_checkpointing_func(resnet, hidden, temb)
    return resnet(hidden, temb)


def _site(block, index, hidden, call):
    site = block.emo_sites[index]
    if site is None or not isinstance(call, site.call_type):
        return hidden
    return site.run(block, hidden, call)


class MotionDownBlock2D(DownBlock2D):
    """``DownBlock2D`` + a site after each resnet; takes ``cross_attention_kwargs``."""

    has_cross_attention = True  # so UNet2DConditionModel hands it cross_attention_kwargs

    def forward(self, hidden_states, temb=None, encoder_hidden_states=None, attention_mask=None,
                cross_attention_kwargs=None, encoder_attention_mask=None,
                additional_residuals=None):
        """``hidden_states: (n, c, h, w)`` -> ``(hidden, residuals)`` as ``DownBlock2D``."""
        call = call_of(cross_attention_kwargs)
        output_states = ()
        for index, resnet in enumerate(self.resnets):
            hidden_states = _resnet(self, resnet, hidden_states, temb)
            hidden_states = _site(self, index, hidden_states, call)
            output_states = output_states + (hidden_states,)
        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = downsampler(hidden_states)
            output_states = output_states + (hidden_states,)
        if additional_residuals is not None:  # T2I-Adapter, as the UNet adds it for DownBlock2D
            hidden_states += additional_residuals
        return hidden_states, output_states


class MotionUpBlock2D(UpBlock2D):
    """``UpBlock2D`` + a site after each resnet; takes ``cross_attention_kwargs``."""

    has_cross_attention = True

    def forward(self, hidden_states, res_hidden_states_tuple, temb=None, encoder_hidden_states=None,
                cross_attention_kwargs=None, upsample_size=None, attention_mask=None,
                encoder_attention_mask=None):
        """As ``UpBlock2D.forward``, with the site after each resnet."""
        call = call_of(cross_attention_kwargs)
        freeu = all(getattr(self, k, None) for k in ("s1", "s2", "b1", "b2"))
        for index, resnet in enumerate(self.resnets):
            res_hidden_states = res_hidden_states_tuple[-1]
            res_hidden_states_tuple = res_hidden_states_tuple[:-1]
            if freeu:
                hidden_states, res_hidden_states = apply_freeu(
                    self.resolution_idx, hidden_states, res_hidden_states,
                    s1=self.s1, s2=self.s2, b1=self.b1, b2=self.b2)
            hidden_states = torch.cat([hidden_states, res_hidden_states], dim=1)
            hidden_states = _resnet(self, resnet, hidden_states, temb)
            hidden_states = _site(self, index, hidden_states, call)
        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states, upsample_size)
        return hidden_states


_WRAPPERS = {DownBlock2D: MotionDownBlock2D, UpBlock2D: MotionUpBlock2D}


def as_motion_block(block):
    """Swap a ``DownBlock2D`` / ``UpBlock2D`` to its motion wrapper in place (idempotent)."""
    if type(block) in _WRAPPERS.values():
        return block
    wrapper = _WRAPPERS.get(type(block))
    if wrapper is None:
        raise ValueError(f"no motion-block wrapper for {type(block).__name__}; EMO supports the "
                         f"SD1.5 block types {[t.__name__ for t in _WRAPPERS]}")
    block.__class__ = wrapper
    block.emo_sites = [None] * len(block.resnets)
    return block
