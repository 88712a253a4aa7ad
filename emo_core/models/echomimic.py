"""EchoMimic v1 networks, composed from the pack's SD1.5 parts (no EchoMimic code).

What differs from the EMO / Hallo networks, and how it is composed here:

* ``EchoReferenceNet``: EchoMimic's 2D transformer blocks have no cross-attention (``attn1`` +
  ``ff`` only), so ``attn2`` / ``norm2`` are removed from the diffusers blocks (diffusers skips
  a missing ``attn2``). Everything else is the pack's ``ReferenceNet`` (bank = ``attn1`` input =
  ``norm1`` output; output head never built).
* ``EchoBackbone``: the pack's ``EMOBackbone`` (concat reference attention with per-row
  dropping, AnimateDiff-v2 motion modules at all 21 sites, face map added after ``conv_in``)
  without EMO's audio modules and speed layers, and with no motion frames. The audio is the
  spatial transformers' own cross-attention context: each frame's whisper tokens
  ``(b, f, K, 384)`` are that frame's ``encoder_hidden_states``, and ``attn2``'s output is
  multiplied by ``audio_scale`` (EchoMimic's ``audio_feature_ratio`` = 3.0) before the residual.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import BasicTransformerBlock
from einops import rearrange
from torch import nn

from .backbone import EMOBackbone, install_temporal_sites
from .reference_attention import ContextAttention
from .reference_net import ReferenceNet
from .sites import Site


class ScaledContextAttention(ContextAttention):
    """``attn2`` whose output is multiplied by ``emo_output_scale`` (EchoMimic: 3.0)."""

    emo_output_scale: float

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, emo=None,
                **kwargs):
        out = super().forward(hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        return out * self.emo_output_scale


def transformer_blocks(unet: nn.Module) -> list[nn.Module]:
    """Every spatial ``BasicTransformerBlock`` of a diffusers UNet, in module order (the
    motion modules' temporal blocks are another class)."""
    return [m for m in unet.modules() if isinstance(m, BasicTransformerBlock)]


class EchoReferenceNet(ReferenceNet):
    """``ReferenceNet`` whose transformer blocks have no cross-attention (EchoMimic's)."""

    @register_to_config
    def __init__(self, unet: dict | None = None):
        super().__init__(unet)
        for block in transformer_blocks(self.unet):
            block.attn2 = None
            block.norm2 = None


class EchoBackbone(EMOBackbone):
    """``backbone(sample (b, f, 4, h, w), t, reference=..., reference_rows=..., face_embedding=
    (b, C0, h, w), context=(b, f, K, D) whisper tokens) -> v-prediction (b, f, 4, h, w)``."""

    @register_to_config
    def __init__(self, unet: dict | None = None, audio_token_dim: int = 384,
                 speed_token_dim: int = 0, motion_num_attention_heads: int = 8,
                 motion_max_frames: int = 32, motion_frames: int = 0,
                 reference_attention: str = "concat", variant: str = "echomimic",
                 hallo: dict | None = None, audio_scale: float = 3.0):
        # ``variant`` is always this family's (a config argument only so from_config round-trips)
        if speed_token_dim or motion_frames or reference_attention != "concat" or hallo:
            raise ValueError("EchoBackbone has no speed layers, no motion frames and concat "
                             "reference attention only")
        super().__init__(unet=unet, audio_token_dim=audio_token_dim, speed_token_dim=0,
                         motion_num_attention_heads=motion_num_attention_heads,
                         motion_max_frames=motion_max_frames, motion_frames=0,
                         variant="echomimic")
        cross = self.unet.config.cross_attention_dim
        if audio_token_dim != cross:
            raise ValueError(f"audio_token_dim {audio_token_dim} must equal the UNet's "
                             f"cross_attention_dim {cross} (the audio is attn2's context)")
        for block in transformer_blocks(self.unet):
            block.attn2.__class__ = ScaledContextAttention
            block.attn2.emo_output_scale = float(audio_scale)

    def _context(self, context, batch: int, frames: int, sample) -> torch.Tensor:
        """Per-frame audio tokens ``(b, f, K, D)`` -> ``(b*f, K, D)`` (EchoMimic's attn2 input)."""
        dim = self.unet.config.cross_attention_dim
        expected = (batch, frames, "K", dim)
        if context is None or context.ndim != 4 or tuple(context.shape[:2]) != (batch, frames) \
                or context.shape[-1] != dim:
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"context (whisper tokens) must be {expected}, got {got}")
        return rearrange(context.to(sample.dtype), "b f k d -> (b f) k d")


def install_motion_sites(backbone, by_block: dict[str, list[Site]]) -> int:
    """EchoMimic's site layers: a motion module after every site (AnimateDiff v2 layout, no
    speed attention), no audio modules (``EchoMimicFamily.install_sites``)."""
    return install_temporal_sites(backbone, by_block, None)
