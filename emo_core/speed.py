"""Head speed curves for EMO's speed layers, in degrees of head rotation per frame.

At inference the speed is chosen by the user: a constant, keyframes ``"time:speed, ..."`` (seconds :
degrees/frame, linear in between, held before the first and after the last keyframe, frame i at
time i / fps), or measured from a driving video (``emo_core.face.head_pose``). The speed encoder
sees each frame's speed together with its neighbours (``speed_windows``) mapped onto buckets
``tanh(3 (w - c_d) / r_d)`` (``speed_to_buckets``).
"""

from __future__ import annotations

import logging
import math
import re

import numpy as np

from .errors import EMOInputError

logger = logging.getLogger(__name__)

MAX_SPEED = 360.0  # a full turn per frame: anything above is a typo, not a head motion
_SEPARATORS = re.compile(r"[,;\n]")
_EXAMPLE = '"0:2.0, 3.5:8.0" (seconds:degrees per frame)'


def _check_frames(num_frames) -> int:
    if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1:
        raise EMOInputError(f"num_frames={num_frames!r} is invalid; use a whole number >= 1.")
    return int(num_frames)


def _check_speed(value, what: str) -> float:
    try:
        speed = float(value)
    except (TypeError, ValueError):
        raise EMOInputError(
            f"{what}: {value!r} is not a number; use degrees per frame, e.g. 2.0."
        ) from None
    if not math.isfinite(speed) or not 0 <= speed <= MAX_SPEED:
        raise EMOInputError(
            f"{what}: speed {value!r} is invalid; use degrees per frame in 0..{MAX_SPEED:g} "
            "(real head motion is 0-10)."
        )
    return speed


def constant_speed(value: float, num_frames: int) -> np.ndarray:
    """(num_frames,) float32 filled with ``value`` degrees/frame."""
    return np.full(_check_frames(num_frames), _check_speed(value, "constant speed"), np.float32)


def _parse_item(item: str, position: int) -> tuple[float, float]:
    parts = item.split(":")
    if len(parts) != 2:
        raise EMOInputError(
            f"speed keyframe {position + 1} {item.strip()!r} is not 'time:speed'; write e.g. "
            f"{_EXAMPLE}."
        )
    try:
        time = float(parts[0])
    except ValueError:
        raise EMOInputError(
            f"speed keyframe {position + 1} {item.strip()!r}: time {parts[0].strip()!r} is not a "
            f"number of seconds; write e.g. {_EXAMPLE}."
        ) from None
    if not math.isfinite(time) or time < 0:
        raise EMOInputError(
            f"speed keyframe {position + 1} {item.strip()!r}: time must be >= 0 seconds."
        )
    return time, _check_speed(parts[1].strip(), f"speed keyframe {position + 1} {item.strip()!r}")


def _check_order(keyframes) -> None:
    """Times must increase strictly (no duplicates, no reordering)."""
    for i in range(1, len(keyframes)):
        if keyframes[i][0] <= keyframes[i - 1][0]:
            kind = "duplicate" if keyframes[i][0] == keyframes[i - 1][0] else "out of order"
            raise EMOInputError(
                f"speed keyframes: time {keyframes[i][0]:g} s is {kind} (after "
                f"{keyframes[i - 1][0]:g} s); list keyframes once each, in increasing time."
            )


def parse_keyframes(spec: str) -> list[tuple[float, float]]:
    """``"0:2.0, 3.5:8.0"`` -> ``[(0.0, 2.0), (3.5, 8.0)]`` (seconds, degrees/frame).

    Items are separated by commas, semicolons or new lines; times must increase strictly.
    A bare number (``"3"``) means that speed for the whole video.
    """
    if not isinstance(spec, str):
        raise EMOInputError(
            f"speed keyframes must be text like {_EXAMPLE}, got {type(spec).__name__}."
        )
    items = [item for item in _SEPARATORS.split(spec) if item.strip()]
    if not items:
        raise EMOInputError(f"speed keyframes are empty; write e.g. {_EXAMPLE}.")
    if len(items) == 1 and ":" not in items[0]:
        try:
            float(items[0])
        except ValueError:
            raise EMOInputError(
                f"speed keyframes {items[0].strip()!r} are neither a speed nor 'time:speed' pairs; "
                f"write e.g. {_EXAMPLE} or a single speed such as 2.0."
            ) from None
        return [(0.0, _check_speed(items[0].strip(), "speed keyframes"))]
    keyframes = [_parse_item(item, i) for i, item in enumerate(items)]
    _check_order(keyframes)
    return keyframes


def keyframed_speed(spec, num_frames: int, fps: float) -> np.ndarray:
    """Keyframes (text or list of (seconds, deg/frame)) -> (num_frames,) float32 at ``fps``.

    Linear between keyframes, constant before the first and after the last; frame i at i / fps.
    """
    if isinstance(spec, str):
        keyframes = parse_keyframes(spec)
    else:
        keyframes = [(float(t), _check_speed(v, "speed keyframe")) for t, v in spec]
        if not keyframes or any(not math.isfinite(t) or t < 0 for t, _ in keyframes):
            raise EMOInputError(
                f"speed keyframes {keyframes!r} are invalid; write e.g. {_EXAMPLE}."
            )
        _check_order(keyframes)
    if not (math.isfinite(float(fps)) and fps > 0):
        raise EMOInputError(f"fps={fps!r} is invalid; use a positive frame rate such as 25.")
    times = np.arange(_check_frames(num_frames), dtype=np.float64) / float(fps)
    key_times = [time for time, _ in keyframes]
    key_speeds = [speed for _, speed in keyframes]
    return np.interp(times, key_times, key_speeds).astype(np.float32)


def speed_windows(speeds, window: int = 2):
    """(F,) speeds -> (F, 2*window+1): each frame with ``window`` neighbours on each side.

    Indices past either end are clamped to the first / last frame. numpy in -> numpy out,
    torch in -> torch out.
    """
    if int(window) != window or window < 0:
        raise ValueError(f"window must be a whole number >= 0, got {window!r}")
    if getattr(speeds, "ndim", None) != 1 or speeds.shape[0] < 1:
        raise ValueError(f"speeds must be (F,) with F >= 1, got {getattr(speeds, 'shape', speeds)}")
    count = speeds.shape[0]
    offsets = np.arange(-int(window), int(window) + 1)
    index = np.clip(np.arange(count)[:, None] + offsets[None, :], 0, count - 1)
    if hasattr(speeds, "detach"):  # torch tensor
        import torch

        return speeds[torch.as_tensor(index, device=speeds.device)]
    return np.asarray(speeds)[index]


def stretch_speeds(curve, num_frames: int) -> np.ndarray:
    """A measured ``(M,)`` speed curve (e.g. from a driving video) stretched or squeezed over
    ``num_frames`` by nearest index -> ``(num_frames,)`` float32; an empty curve gives zeros."""
    curve = np.asarray(curve, dtype=np.float32).reshape(-1)
    num_frames = _check_frames(num_frames)
    if curve.size == 0:
        return np.zeros(num_frames, dtype=np.float32)
    return curve[np.rint(np.linspace(0, curve.size - 1, num_frames)).astype(np.int64)]


def speed_to_buckets(speeds, centers, radii):
    """(...,) deg/frame -> (..., d) bucket encoding ``tanh(3 (w - c_d) / r_d)`` (torch)."""
    import torch

    from .models.speed_encoder import encode_speed_buckets

    speeds = torch.as_tensor(speeds, dtype=torch.float32)
    return encode_speed_buckets(speeds, centers, radii)
