"""Face-identity tokens: a face embedding -> cross-attention context tokens (Hallo ``imageproj``).

``Linear(embedding_dim -> tokens * dim)`` then a per-token ``LayerNorm``. Parameter names
``proj, norm`` match Hallo's ``net.pth`` (``imageproj.*``), so its weights load unchanged. In a
Hallo-variant checkpoint these tokens replace the learned null ``context`` of both UNets; the
unconditional context is the projection of a zero embedding (not zeros).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class ImageProjection(ModelMixin, ConfigMixin):
    """``embedding: (b, embedding_dim)`` -> tokens ``(b, context_tokens, cross_attention_dim)``."""

    @register_to_config
    def __init__(self, embedding_dim: int = 512, cross_attention_dim: int = 768,
                 context_tokens: int = 4):
        super().__init__()
        self.proj = nn.Linear(embedding_dim, context_tokens * cross_attention_dim)
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if embedding.ndim != 2 or embedding.shape[-1] != cfg.embedding_dim:
            raise ValueError(f"face embedding must be (b, {cfg.embedding_dim}), "
                             f"got {tuple(embedding.shape)}")
        tokens = self.proj(embedding.to(self.proj.weight.dtype))
        return self.norm(tokens.unflatten(-1, (cfg.context_tokens, cfg.cross_attention_dim)))
