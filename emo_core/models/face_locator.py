"""Face Locator: the face-region mask -> a latent-resolution embedding added after ``conv_in``.

Composes diffusers' ``ControlNetConditioningEmbedding`` (strided conv stack + zero-initialised
``conv_out``), so the locator adds nothing until trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from diffusers.models.modeling_utils import ModelMixin


class FaceLocator(ModelMixin, ConfigMixin):
    """``mask: (b, C, H, W)`` at image resolution -> ``(b, embedding_channels, H/8, W/8)``."""

    @register_to_config
    def __init__(
        self,
        conditioning_channels: int = 1,
        block_out_channels: Sequence[int] = (16, 32, 96, 256),
        embedding_channels: int = 320,
    ):
        super().__init__()
        self.embedding = ControlNetConditioningEmbedding(
            conditioning_embedding_channels=embedding_channels,
            conditioning_channels=conditioning_channels,
            block_out_channels=tuple(block_out_channels),
        )

    @property
    def downscale(self) -> int:
        """Spatial factor: one stride-2 conv per step between ``block_out_channels``."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """``mask: (b, C, H, W)`` float in [0, 1] -> ``(b, E, H/8, W/8)``."""
        channels = self.config.conditioning_channels
        factor = self.downscale
        if mask.ndim != 4 or mask.shape[1] != channels:
            raise ValueError(f"mask must be (b, {channels}, H, W), got {tuple(mask.shape)}")
        if mask.shape[-1] % factor or mask.shape[-2] % factor:
            raise ValueError(
                f"mask height and width must be multiples of {factor}, got "
                f"{tuple(mask.shape[-2:])}"
            )
        if not mask.is_floating_point():
            raise ValueError(f"mask must be a float tensor in [0, 1], got {mask.dtype}")
        return self.embedding(mask.to(self.embedding.conv_in.weight.dtype))
