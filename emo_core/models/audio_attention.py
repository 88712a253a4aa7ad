"""Audio cross-attention: spatial latent tokens attend to the frame's audio tokens.

``norm -> diffusers Attention(query=c, kv=audio token dim) -> zero-initialised output``, added as
a residual, so a freshly built block is an exact identity. Placed after each spatial transformer
of the Backbone (16 sites).
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention
from einops import rearrange
from torch import nn


class AudioAttention(nn.Module):
    """``hidden: (b*f, c, h, w)``, ``audio_tokens: (b*f, K, D)`` -> ``(b*f, c, h, w)``."""

    def __init__(self, channels: int, audio_token_dim: int, heads: int, norm_eps: float = 1e-5):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels {channels} must be divisible by heads {heads}")
        self.channels = channels
        self.audio_token_dim = audio_token_dim
        self.norm = nn.LayerNorm(channels, eps=norm_eps)
        self.attn = Attention(
            query_dim=channels, cross_attention_dim=audio_token_dim, heads=heads,
            dim_head=channels // heads, bias=False, out_bias=True,
        )
        # Zero output projection: the block contributes exactly 0 until trained.
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)

    def forward(self, hidden: torch.Tensor, audio_tokens: torch.Tensor | None) -> torch.Tensor:
        """``hidden: (n, c, h, w)``, ``audio_tokens: (n, K, Da)`` -> ``(n, c, h, w)`` (which rows
        hear the audio is decided by the caller's row runs, ``conditioning.apply_runs``)."""
        if audio_tokens is None:
            return hidden
        if audio_tokens.ndim != 3 or audio_tokens.shape[0] != hidden.shape[0] \
                or audio_tokens.shape[-1] != self.audio_token_dim:
            raise ValueError(
                f"audio_tokens must be ({hidden.shape[0]}, K, {self.audio_token_dim}), "
                f"got {tuple(audio_tokens.shape)}"
            )
        height, width = hidden.shape[-2:]
        queries = self.norm(rearrange(hidden, "n c h w -> n (h w) c"))
        delta = self.attn(queries, encoder_hidden_states=audio_tokens.to(queries.dtype))
        return hidden + rearrange(delta, "n (h w) c -> n c h w", h=height, w=width).contiguous()
