"""How a video of F frames is cut into clips of f frames chained by n motion frames.

Rule: every clip generates ``f`` new frames; the motion frames are the last ``n`` latents of the
previous clip (already generated, not generated again). So ``num_clips = ceil(F / f)``
(equivalently ``ceil((F - f) / f) + 1`` for ``F >= 1``) and the last clip is trimmed to the frames
that remain. Conditions (audio windows, speed) are indexed on the global frame axis, so windows
continue across clip boundaries; frames past the end (padding of the last clip) repeat the last frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ClipSpan:
    """Clip ``index`` covers global frames ``start .. start + length`` (``keep`` of them are real)."""

    index: int
    start: int
    length: int
    keep: int

    def frame_indices(self, total_frames: int) -> torch.Tensor:
        """``(length,)`` global frame indices, clamped to the last real frame for padding."""
        return torch.arange(self.start, self.start + self.length).clamp(max=total_frames - 1)


def num_clips(total_frames: int, frames_per_clip: int) -> int:
    if total_frames < 1 or frames_per_clip < 1:
        raise ValueError(
            f"total_frames and frames_per_clip must be >= 1, got {total_frames}, {frames_per_clip}"
        )
    return math.ceil(total_frames / frames_per_clip)


def clip_spans(total_frames: int, frames_per_clip: int) -> list[ClipSpan]:
    """The clips of a video; ``sum(span.keep) == total_frames``."""
    return [
        ClipSpan(
            index=i,
            start=i * frames_per_clip,
            length=frames_per_clip,
            keep=min(frames_per_clip, total_frames - i * frames_per_clip),
        )
        for i in range(num_clips(total_frames, frames_per_clip))
    ]
