"""Hallo's hierarchical audio attention: one audio module per spatial transformer of the denoiser.

Module layout (parameter names = Hallo ``net.pth`` ``*.audio_modules.N.*``)::

    norm (GroupNorm) -> proj_in (1x1 conv, C -> inner) -> transformer_blocks.0 -> proj_out -> + x

and the block: ``x += attn1(norm1(x))`` (self-attention), then three cross-attentions to the
frame's audio tokens, ``attn2_0 / attn2_1 / attn2_2``, on ``norm2(x)``; each output is weighted
per token by the full / face / lip mask of this resolution, passed through a 1x1 conv
(``zero_conv_full / face / lip``) and scaled by ``motion_scale[0 / 1 / 2]``; the sum is added to
``x``; then ``x += ff(norm3(x))``. The masks are per-row ``(b*f, h*w)`` soft weights.
"""

from __future__ import annotations

from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from einops import rearrange
from torch import nn

REGIONS = ("full", "face", "lip")


class HalloAudioBlock(nn.Module):
    """Token block: ``(n, h*w, inner)`` -> same; audio ``(n, K, D)``; masks 3 x ``(n, h*w)``."""

    def __init__(self, dim: int, heads: int, audio_dim: int):
        super().__init__()
        head_dim = dim // heads

        def attention(cross_dim=None):
            return Attention(query_dim=dim, cross_attention_dim=cross_dim, heads=heads,
                             dim_head=head_dim, bias=False)

        self.attn1 = attention()
        self.norm1 = nn.LayerNorm(dim)
        self.attn2_0 = attention(audio_dim)
        self.attn2_1 = attention(audio_dim)
        self.attn2_2 = attention(audio_dim)
        self.norm2 = nn.LayerNorm(dim)
        for region in REGIONS:
            self.add_module(f"zero_conv_{region}", nn.Conv2d(dim, dim, kernel_size=1))
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, tokens, audio, masks, scale, size):
        """``size = (h, w)``; ``masks``: (full, face, lip), each ``(n, h*w)``; ``scale``: 3 floats."""
        tokens = self.attn1(self.norm1(tokens)) + tokens
        queries = self.norm2(tokens)
        height, width = size
        attentions = (self.attn2_0, self.attn2_1, self.attn2_2)
        parts = []
        for region, attention, mask, weight in zip(REGIONS, attentions, masks, scale, strict=True):
            out = attention(queries, encoder_hidden_states=audio) * mask[:, :, None].to(queries)
            grid = rearrange(out, "n (h w) c -> n c h w", h=height, w=width)
            conv = getattr(self, f"zero_conv_{region}")
            parts.append(weight * rearrange(conv(grid), "n c h w -> n (h w) c"))
        # Hallo's summation order (regions first, then the residual): same rounding.
        tokens = parts[0] + parts[1] + parts[2] + tokens
        return self.ff(self.norm3(tokens)) + tokens


class HalloAudioModule(nn.Module):
    """``hidden: (b*f, C, h, w)``, ``audio: (b*f, K, D)`` -> ``(b*f, C, h, w)``.

    ``depth`` selects this module's entry in the per-resolution mask lists.
    """

    def __init__(self, channels: int, inner_dim: int, heads: int, audio_dim: int, depth: int,
                 norm_num_groups: int = 32):
        super().__init__()
        self.depth = depth
        self.audio_dim = audio_dim
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(channels, inner_dim, kernel_size=1)
        self.transformer_blocks = nn.ModuleList([HalloAudioBlock(inner_dim, heads, audio_dim)])
        self.proj_out = nn.Conv2d(inner_dim, channels, kernel_size=1)

    def forward(self, hidden, audio, masks, scale=(1.0, 1.0, 1.0)):
        """``masks``: (full, face, lip) lists indexed by depth, entries ``(b*f, h*w)``."""
        if audio is None:
            return hidden
        if audio.ndim != 3 or audio.shape[0] != hidden.shape[0] or audio.shape[-1] != self.audio_dim:
            raise ValueError(f"audio tokens must be ({hidden.shape[0]}, K, {self.audio_dim}), "
                             f"got {tuple(audio.shape)}")
        height, width = hidden.shape[-2:]
        level = [regional[self.depth] for regional in masks]
        for mask in level:
            if tuple(mask.shape) != (hidden.shape[0], height * width):
                raise ValueError(f"mask level {self.depth} must be ({hidden.shape[0]}, "
                                 f"{height * width}), got {tuple(mask.shape)}")
        tokens = rearrange(self.proj_in(self.norm(hidden)), "n c h w -> n (h w) c")
        for block in self.transformer_blocks:
            tokens = block(tokens, audio.to(tokens.dtype), level, scale, (height, width))
        out = rearrange(tokens, "n (h w) c -> n c h w", h=height, w=width).contiguous()
        return self.proj_out(out) + hidden
