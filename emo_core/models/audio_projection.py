"""Audio projection: a window of stacked wav2vec layers per frame -> audio context tokens.

Parameter names and maths follow Hallo's ``AudioProjModel`` (``proj1, proj2, proj3, norm``), so
Hallo ``net.pth`` audio weights load unchanged.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn


class AudioProjection(ModelMixin, ConfigMixin):
    """``(b, f, seq_len, blocks, channels)`` -> ``(b, f, context_tokens, output_dim)``."""

    @register_to_config
    def __init__(
        self,
        seq_len: int = 5,
        blocks: int = 12,
        channels: int = 768,
        intermediate_dim: int = 512,
        output_dim: int = 768,
        context_tokens: int = 32,
    ):
        super().__init__()
        self.proj1 = nn.Linear(seq_len * blocks * channels, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, context_tokens * output_dim)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """``windows: (b, f, 5, L, C)`` -> tokens ``(b, f, K, D)``."""
        cfg = self.config
        expected = (cfg.seq_len, cfg.blocks, cfg.channels)
        if windows.ndim != 5 or tuple(windows.shape[2:]) != expected:
            raise ValueError(
                f"audio windows must be (b, f, {', '.join(map(str, expected))}), "
                f"got {tuple(windows.shape)}"
            )
        if not windows.is_floating_point():
            raise ValueError(f"audio windows must be a float tensor, got {windows.dtype}")
        frames = windows.shape[1]
        flat = rearrange(windows, "b f w l c -> (b f) (w l c)").to(self.proj1.weight.dtype)
        hidden = torch.relu(self.proj1(flat))
        hidden = torch.relu(self.proj2(hidden))
        tokens = self.proj3(hidden).unflatten(-1, (cfg.context_tokens, cfg.output_dim))
        return rearrange(self.norm(tokens), "(b f) k d -> b f k d", f=frames)
