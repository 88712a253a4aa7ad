"""Head-speed layers: bucket encoding of rotation speed and the MLP that makes speed tokens.

EMO maps a head rotation speed ``w`` (degrees/frame) onto ``d`` buckets with
``s_d = tanh(3 (w - c_d) / r_d)``, takes a window of +-m frames, and an MLP turns it into the
tokens that the temporal modules' speed cross-attention reads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

logger = logging.getLogger(__name__)


def encode_speed_buckets(speed: torch.Tensor, centers, radii) -> torch.Tensor:
    """``speed: (...,)`` deg/frame -> ``(..., d)`` with ``tanh(3 (speed - c_d) / r_d)``."""
    speed = torch.as_tensor(speed)
    if not speed.is_floating_point():
        speed = speed.float()
    centers = torch.as_tensor(centers, dtype=speed.dtype, device=speed.device)
    radii = torch.as_tensor(radii, dtype=speed.dtype, device=speed.device)
    if centers.ndim != 1 or centers.shape != radii.shape:
        raise ValueError(
            f"centers and radii must be 1-D of equal length, got {tuple(centers.shape)} and "
            f"{tuple(radii.shape)}"
        )
    if not bool((radii > 0).all()):
        raise ValueError(f"bucket radii must be > 0, got {radii.tolist()}")
    return torch.tanh(3.0 * (speed[..., None] - centers) / radii)


def speed_windows(speed: torch.Tensor, window: int) -> torch.Tensor:
    """``speed: (b, f)`` -> ``(b, f, 2 window + 1)``; frames past either edge repeat the edge."""
    frames = speed.shape[-1]
    offsets = torch.arange(-window, window + 1, device=speed.device)
    index = (torch.arange(frames, device=speed.device)[:, None] + offsets).clamp(0, frames - 1)
    return speed[:, index]


class SpeedEncoder(ModelMixin, ConfigMixin):
    """``(b, f)`` deg/frame (or precomputed ``(b, f, 2m+1)`` windows) -> tokens ``(b, f, S, Ds)``.

    Parameters: ``mlp.0`` / ``mlp.2`` (Linear, SiLU between) and ``norm`` (LayerNorm on tokens).
    """

    @register_to_config
    def __init__(
        self,
        bucket_centers: Sequence[float] = tuple(float(c) for c in range(0, 17, 2)),
        bucket_radii: Sequence[float] = (2.0,) * 9,
        window: int = 2,
        hidden_dim: int = 512,
        output_dim: int = 768,
        num_tokens: int = 1,
    ):
        super().__init__()
        if len(bucket_centers) != len(bucket_radii) or not bucket_centers:
            raise ValueError(
                f"bucket_centers ({len(bucket_centers)}) and bucket_radii ({len(bucket_radii)}) "
                "must be non-empty and of equal length"
            )
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        # Buckets are configuration, not weights: non-persistent buffers keep them off the
        # state dict while following .to(device).
        self.register_buffer("centers", torch.tensor(bucket_centers), persistent=False)
        self.register_buffer("radii", torch.tensor(bucket_radii), persistent=False)
        in_dim = (2 * window + 1) * len(bucket_centers)
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, num_tokens * output_dim)
        )
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, speed: torch.Tensor) -> torch.Tensor:
        """``speed: (b, f)`` or windows ``(b, f, 2m+1)`` -> ``(b, f, S, Ds)``."""
        cfg = self.config
        span = 2 * cfg.window + 1
        if speed.ndim == 2:
            speed = speed_windows(speed, cfg.window)
        if speed.ndim != 3 or speed.shape[-1] != span:
            raise ValueError(
                f"speed must be (b, f) or windows (b, f, {span}), got {tuple(speed.shape)}"
            )
        if not speed.is_floating_point():
            raise ValueError(f"speed must be a float tensor, got {speed.dtype}")
        buckets = encode_speed_buckets(speed.float(), self.centers.float(), self.radii.float())
        dtype = self.mlp[0].weight.dtype
        tokens = self.mlp(buckets.flatten(2).to(dtype))
        tokens = tokens.unflatten(-1, (cfg.num_tokens, cfg.output_dim))
        return self.norm(tokens)
