"""Read video files with PyAV, resampled to a target frame rate (driving videos, data prep)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from .errors import EMOInputError

MAX_FRAMES = 20_000  # a driving video longer than this (13 min at 25 fps) is almost surely a mistake


def read_video_frames(path, fps: float | None = None, max_frames: int = MAX_FRAMES,
                      max_side: int | None = None) -> np.ndarray:
    """``(F, H, W, 3)`` uint8 RGB. With ``fps``, frames are picked by timestamp so that the result
    is sampled at ``fps`` (nearest earlier source frame), whatever the source rate. With
    ``max_side``, frames are downscaled while decoding so a long HD video stays small in memory."""
    path = Path(path)
    if not path.is_file():
        raise EMOInputError(f"video file {path} does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise EMOInputError(f"{path} has no video stream")
            frames, times = [], []
            for frame in container.decode(video=0):
                frames.append(_to_rgb(frame, max_side))
                times.append(float(frame.time) if frame.time is not None else len(times) / 25.0)
                if len(frames) > max_frames:
                    raise EMOInputError(f"{path} has more than {max_frames} frames; trim it first")
    except av.error.FFmpegError as error:
        raise EMOInputError(f"cannot read video {path}: {error}") from None
    if not frames:
        raise EMOInputError(f"video {path} contains no frames")
    if fps is None:
        return np.stack(frames)
    times = np.asarray(times) - times[0]
    count = max(1, int(round((times[-1] + (times[1] - times[0] if len(times) > 1 else 0)) * fps)))
    picks = np.searchsorted(times, np.arange(count) / fps + 1e-6, side="right") - 1
    return np.stack([frames[i] for i in np.clip(picks, 0, len(frames) - 1)])


def _to_rgb(frame, max_side: int | None) -> np.ndarray:
    scale = 1.0 if max_side is None else min(1.0, max_side / max(frame.width, frame.height))
    if scale == 1.0:
        return frame.to_ndarray(format="rgb24")
    width, height = max(2, round(frame.width * scale)), max(2, round(frame.height * scale))
    return frame.to_ndarray(format="rgb24", width=width, height=height)
