"""How a video of F frames is cut into clips of f frames chained by n motion frames.

Rule: every clip generates ``f`` new frames; the motion frames are the last ``n`` latents of the
previous clip (already generated, not generated again). So ``num_clips = ceil(F / f)``
(equivalently ``ceil((F - f) / f) + 1`` for ``F >= 1``) and the last clip generates only the
``F - (num_clips - 1) f`` frames that remain: no frame is denoised and then dropped (issue 22; the
temporal modules take any clip length up to their position table, and every other clip keeps its
layout, so full clips compute exactly what they computed before). ``pad_last=True`` gives the
padded layout instead (Hallo's released loop: the last clip is a whole clip whose extra frames
are dropped; kept for bit-exact reproduction, docs/ARCHITECTURE.md "Last clip"). Conditions
(audio windows, speed) are indexed on the global frame axis, so windows continue across clip
boundaries; frames past the end (padding of a padded last clip) repeat the last frame.
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


def clip_spans(total_frames: int, frames_per_clip: int, pad_last: bool = False) -> list[ClipSpan]:
    """The clips of a video; ``sum(span.keep) == total_frames``. Every span generates the frames
    it keeps (``length == keep``) unless ``pad_last``: then every span is ``frames_per_clip``
    long and the last one's padding frames are generated and dropped."""
    spans = []
    for i in range(num_clips(total_frames, frames_per_clip)):
        keep = min(frames_per_clip, total_frames - i * frames_per_clip)
        spans.append(ClipSpan(index=i, start=i * frames_per_clip,
                              length=frames_per_clip if pad_last else keep, keep=keep))
    return spans
