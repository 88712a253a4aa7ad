"""AnimateDiff-v2 motion module (original parameter names) plus EMO's speed cross-attention.

Parameter names match ``mm_sd_v15_v2`` once prefixed with the site (``down_blocks.0.
motion_modules.0.``): ``temporal_transformer.{norm, proj_in, transformer_blocks.0.{attention_blocks.
{0,1}.{to_q,to_k,to_v,to_out.0,pos_encoder.pe}, norms.{0,1}, ff.net.{0.proj,2}, ff_norm}, proj_out}``.
Speed cross-attention is an extra ``attention_blocks.2`` + ``norms.2`` (zero-initialised output).

Speed design: each clip frame's spatial tokens ``(b*f, h*w, c)`` attend to that frame's speed tokens
``(b*f, S, Ds)`` (the +-m window is already inside each frame's tokens). Motion frames (prepended
in front of the clip) have no speed, so the speed block runs on the clip frames only.

Motion rows are dropped right after the last temporal attention: everything after it (speed
cross-attention, feed-forward, ``proj_out``, residual) is per frame, so computing it for rows the
module discards would be waste (at SD1.5 size with 2 motion frames ~1.5 % of a Hallo step).
"""

from __future__ import annotations

import math

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from einops import rearrange
from torch import nn

from ..errors import EMOInputError


class PositionalEncoding(nn.Module):
    """Sinusoidal frame positions; buffer ``pe: (1, max_len, dim)`` is persistent (in checkpoints)."""

    def __init__(self, dim: int, max_len: int = 32):
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(1e4) / dim))
        pe = torch.zeros(1, max_len, dim)
        pe[0, :, 0::2] = torch.sin(position * div_term)
        pe[0, :, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens: (n, frames, dim)`` -> same, positions added."""
        return tokens + self.pe[:, : tokens.shape[1]].to(tokens.dtype)


class TemporalAttention(Attention):
    """Self-attention over the frame axis at every spatial position (AnimateDiff ``Temporal_Self``)."""

    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        self.pos_encoder = PositionalEncoding(dim, max_len)

    def forward(self, hidden: torch.Tensor, frames: int) -> torch.Tensor:
        """``hidden: (b*F, h*w, c)`` -> ``(b*F, h*w, c)``; attention runs along F."""
        spatial = hidden.shape[1]
        tokens = rearrange(hidden, "(b f) d c -> (b d) f c", f=frames)
        out = super().forward(self.pos_encoder(tokens))
        return rearrange(out, "(b d) f c -> (b f) d c", d=spatial)


def speed_attention(dim: int, heads: int, speed_token_dim: int) -> Attention:
    """The speed cross-attention (``attention_blocks.2``), its output projection zero."""
    speed = Attention(query_dim=dim, cross_attention_dim=speed_token_dim, heads=heads,
                      dim_head=dim // heads, bias=False)
    nn.init.zeros_(speed.to_out[0].weight)
    nn.init.zeros_(speed.to_out[0].bias)
    return speed


class TemporalTransformerBlock(nn.Module):
    """Two temporal self-attentions (+ optional speed cross-attention), then GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, max_len: int, speed_token_dim: int | None):
        super().__init__()
        blocks: list[nn.Module] = [TemporalAttention(dim, heads, max_len) for _ in range(2)]
        if speed_token_dim:
            blocks.append(speed_attention(dim, heads, speed_token_dim))
        self.attention_blocks = nn.ModuleList(blocks)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in blocks)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, hidden: torch.Tensor, frames: int, clip_frames: int,
                speed_tokens: torch.Tensor | None) -> torch.Tensor:
        """``hidden: (b*F, h*w, c)``, ``speed_tokens: (b*f, S, Ds)`` for the last f of F frames
        -> the clip rows ``(b*f, h*w, c)`` (the motion rows end after the temporal attentions)."""
        for attention, norm in zip(self.attention_blocks[:2], self.norms[:2], strict=True):
            hidden = attention(norm(hidden), frames) + hidden
        hidden = clip_rows(hidden, frames, clip_frames)
        if len(self.attention_blocks) > 2 and speed_tokens is not None:
            speed = self.attention_blocks[2](self.norms[2](hidden),
                                             encoder_hidden_states=speed_tokens.to(hidden.dtype))
            hidden = hidden + speed
        return self.ff(self.ff_norm(hidden)) + hidden


def clip_rows(rows: torch.Tensor, frames: int, clip_frames: int) -> torch.Tensor:
    """``(b*F, ...)`` -> the last ``clip_frames`` of every ``F`` frames, ``(b*f, ...)``."""
    if clip_frames == frames:
        return rows
    grid = rows.unflatten(0, (-1, frames))
    return grid[:, frames - clip_frames:].flatten(0, 1)


class TemporalTransformer(nn.Module):
    """GroupNorm -> proj_in -> 1 transformer block -> proj_out (zero) -> + input (clip rows)."""

    def __init__(self, channels: int, heads: int, max_len: int, speed_token_dim: int | None,
                 norm_num_groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(channels, heads, max_len, speed_token_dim)]
        )
        self.proj_out = nn.Linear(channels, channels)
        # Zero output projection (AnimateDiff's zero_initialize): identity until trained/loaded.
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, hidden, frames, clip_frames, speed_tokens):
        """``hidden: (b*F, c, h, w)`` -> the clip rows ``(b*f, c, h, w)`` (one block: it drops
        the motion rows after its attentions)."""
        height, width = hidden.shape[-2:]
        tokens = rearrange(self.norm(hidden), "n c h w -> n (h w) c")
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, frames, clip_frames, speed_tokens)
        tokens = self.proj_out(tokens)
        # contiguous(): a channels-last view would make the next conv pick another algorithm
        # (different rounding), breaking bit-exact identity at init.
        return clip_rows(hidden, frames, clip_frames) + rearrange(
            tokens, "n (h w) c -> n c h w", h=height, w=width).contiguous()


class TemporalModule(nn.Module):
    """One motion-module site (AnimateDiff ``VanillaTemporalModule``) with motion-frame chaining."""

    def __init__(self, channels: int, num_attention_heads: int = 8, max_frames: int = 32,
                 speed_token_dim: int | None = None, norm_num_groups: int = 32):
        super().__init__()
        if channels % num_attention_heads:
            raise ValueError(
                f"channels {channels} must be divisible by num_attention_heads "
                f"{num_attention_heads}"
            )
        self.channels = channels
        self.max_frames = max_frames
        self.temporal_transformer = TemporalTransformer(
            channels, num_attention_heads, max_frames, speed_token_dim, norm_num_groups
        )

    def forward(self, hidden: torch.Tensor, frames: int, motion: torch.Tensor | None = None,
                speed_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """``hidden: (b*f, c, h, w)``, ``motion: (b, n, c, h, w)`` -> ``(b*f, c, h, w)``.

        Motion-frame features go in FRONT of the clip along the frame axis for the attention and
        are sliced off again, so the clip attends to the end of the previous clip.
        """
        if hidden.shape[0] % frames:
            raise ValueError(f"hidden batch {hidden.shape[0]} is not a multiple of frames {frames}")
        batch = hidden.shape[0] // frames
        n = 0 if motion is None else motion.shape[1]
        if n + frames > self.max_frames:
            raise EMOInputError(
                f"motion frames ({n}) + clip frames ({frames}) = {n + frames} exceeds the motion "
                f"module's {self.max_frames} positions; use fewer frames per clip or motion frames"
            )
        if motion is not None:
            expected = (batch, n, *hidden.shape[1:])
            if tuple(motion.shape) != expected:
                raise ValueError(f"motion must be {expected}, got {tuple(motion.shape)}")
            clip = rearrange(hidden, "(b f) c h w -> b f c h w", f=frames)
            hidden = torch.cat([motion.to(hidden.dtype), clip], dim=1).flatten(0, 1)
        return self.temporal_transformer(hidden, n + frames, frames, speed_tokens)
