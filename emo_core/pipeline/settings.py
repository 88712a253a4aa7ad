"""Runtime knobs of one generation run (never part of the model config)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..errors import EMOInputError
from ..prediction import PREDICTION_TYPES

SCHEDULERS = ("ddim", "ddim-vpred-trailing", "dpmpp-2m", "euler", "unipc")
GUIDANCE_MODES = ("separate", "joint")
FIRST_CLIP_MOTION = ("zeros", "reference")

FPS_RANGE = (1.0, 120.0)  # frames per second accepted by validate() (and stated by --help)


@dataclass(frozen=True)
class GenerationSettings:
    """Everything a run needs besides the models and the media.

    ``guidance_mode="separate"``: ``eps = u + s_ref (r - u) + s_aud (ra - r)`` (3 batched branches);
    ``"joint"``: ``eps = u + s_ref (ra - u)`` (2 branches, ``guidance_audio`` unused).
    ``prediction_type`` overrides what the checkpoint says it was trained for (None: the
    checkpoint's ``sampling.prediction_type``, epsilon for SD1.5-initialised weights);
    ``motion_frames=None`` takes the checkpoint's own count (``backbone.motion_frames``, resolved
    by :meth:`for_model` before sampling);
    scheduler ``"ddim-vpred-trailing"`` forces v-prediction with zero terminal SNR and trailing
    spacing (Hallo/EchoMimic-style weights).
    """

    fps: float = 25.0
    steps: int = 40
    seed: int = 0
    guidance_reference: float = 2.0
    guidance_audio: float = 3.5
    guidance_mode: str = "separate"
    # Guidance on a part of the steps only (docs/ARCHITECTURE.md, "Guidance schedule"): the
    # branches run inside [guidance_start, guidance_end) (fractions of the steps, noisiest first,
    # 0..1), every guidance_refresh-th step there (1..1000; the steps between reuse the last
    # branch difference); every other step runs the conditional row alone.
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    guidance_refresh: int = 3
    frames_per_clip: int = 12
    motion_frames: int | None = None
    first_clip_motion: str = "zeros"
    scheduler: str = "ddim"
    prediction_type: str | None = None
    decode_batch: int = 8
    size: int = 512

    def replace(self, **changes) -> GenerationSettings:
        return replace(self, **changes)

    def validate(self) -> GenerationSettings:
        """Raise ``EMOInputError`` naming the first bad field; return self for chaining."""
        if not (math.isfinite(self.fps) and FPS_RANGE[0] <= self.fps <= FPS_RANGE[1]):
            raise EMOInputError(f"fps must be between {FPS_RANGE[0]:g} and {FPS_RANGE[1]:g}, "
                                f"got {self.fps}")
        _check_int("steps", self.steps, 1, 1000)
        _check_int("frames_per_clip", self.frames_per_clip, 1, 32)
        if self.motion_frames is not None:
            _check_int("motion_frames", self.motion_frames, 0, 31)
        _check_int("decode_batch", self.decode_batch, 1, 1024)
        _check_int("guidance_refresh", self.guidance_refresh, 1, 1000)
        if not (math.isfinite(self.guidance_start) and math.isfinite(self.guidance_end)
                and 0.0 <= self.guidance_start <= self.guidance_end <= 1.0):
            raise EMOInputError(
                "guidance_start and guidance_end must satisfy 0 <= start <= end <= 1 (fractions "
                f"of the steps), got {self.guidance_start} and {self.guidance_end}")
        _check_int("seed", self.seed, 0, 2**64 - 1)
        if (self.motion_frames or 0) + self.frames_per_clip > 32:
            raise EMOInputError(
                f"motion_frames + frames_per_clip must be <= 32 (the temporal modules' position "
                f"table), got {self.motion_frames} + {self.frames_per_clip}; lower one of them"
            )
        if self.size % 64 or not 64 <= self.size <= 2048:
            raise EMOInputError(f"size must be a multiple of 64 in 64..2048, got {self.size}")
        for name, value, allowed in (
            ("scheduler", self.scheduler, SCHEDULERS),
            ("guidance_mode", self.guidance_mode, GUIDANCE_MODES),
            ("first_clip_motion", self.first_clip_motion, FIRST_CLIP_MOTION),
            ("prediction_type", self.prediction_type, (None, *PREDICTION_TYPES)),
        ):
            if value not in allowed:
                raise EMOInputError(f"{name} must be one of {allowed}, got {value!r}")
        for name in ("guidance_reference", "guidance_audio"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 30.0):
                raise EMOInputError(f"{name} must be between 0 and 30, got {value}")
        return self


    def for_model(self, backbone_config: Mapping) -> GenerationSettings:
        """Check these settings against a checkpoint's Backbone config (``motion_frames``,
        ``motion_max_frames``) and fill ``motion_frames=None`` from it. Raises
        ``EMOInputError`` before any sampling when a clip would not fit the temporal modules'
        position table: a clip holds ``frames_per_clip`` frames plus the motion frames (the
        checkpoint's own count of zero maps where no previous clip exists)."""
        trained = int(backbone_config.get("motion_frames", 4))
        table = int(backbone_config.get("motion_max_frames", 32))
        settings = self if self.motion_frames is not None else self.replace(motion_frames=trained)
        motion = max(settings.motion_frames, trained)
        if settings.frames_per_clip + motion > table:
            which = ("motion_frames" if settings.motion_frames >= trained
                     else f"the checkpoint's {trained} zero motion frames of the first clip")
            raise EMOInputError(
                f"frames_per_clip {settings.frames_per_clip} + {motion} motion frames ({which}) "
                f"exceeds the {table}-frame position table of this checkpoint's temporal "
                f"modules; use frames_per_clip <= {table - motion}")
        return settings.validate()


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise EMOInputError(f"{name} must be an integer in {low}..{high}, got {value!r}")
