"""Input checks shared by the families' ``check_inputs`` (messages name the input and the fix)."""

from __future__ import annotations

import torch

from ..errors import EMOInputError


def check_face_mask(face_mask, size: int, total_frames: int) -> None:
    """``face_mask``: ``(S, S)`` or ``(F, S, S)`` with ``S = size``."""
    shape = tuple(getattr(face_mask, "shape", ()))
    if face_mask is None or len(shape) not in (2, 3) or shape[-2:] != (size, size):
        raise EMOInputError(
            f"face mask must be (H, W) or (frames, H, W) with H = W = {size}, got "
            f"{shape if face_mask is not None else None}")
    if len(shape) == 3 and shape[0] != total_frames:
        raise EMOInputError(
            f"per-frame face mask has {shape[0]} frames, expected {total_frames}")


def check_speed(speed, total_frames: int) -> torch.Tensor:
    """A number or ``(F,)`` finite deg/frame -> ``(F,)`` float32."""
    speed = torch.as_tensor(speed, dtype=torch.float32)
    if speed.ndim == 0:
        speed = speed.expand(total_frames)
    if speed.shape != (total_frames,) or not torch.isfinite(speed).all():
        raise EMOInputError(
            f"speed must be a number or {total_frames} finite values (deg/frame), "
            f"got shape {tuple(speed.shape)}")
    return speed
