"""Custom socket types of the pack and the frozen values they carry between nodes.

Core ComfyUI types (IMAGE, MASK, AUDIO, LATENT, VAE, MODEL, VIDEO) are used wherever one exists;
these five carry what has no core equivalent. Values are frozen dataclasses so a cached node output
cannot be changed by a downstream node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from emo_core.audio.features import AudioFeatures

from .comfy_bridge import io

EMOModelsType = io.Custom("EMO_MODELS")
EMOReferenceType = io.Custom("EMO_REFERENCE")
EMOAudioType = io.Custom("EMO_AUDIO")
EMOSpeedType = io.Custom("EMO_SPEED")
EMOCropType = io.Custom("EMO_CROP")


@dataclass(frozen=True)
class EMOModelsBundle:
    """Everything the other nodes need to run the model.

    ``models``: ``emo_core.models.EMOModels`` (its ``vae`` may be replaced by a core VAE's weights);
    ``wav2vec``: transformers ``Wav2Vec2Model``; ``device``/``dtype``: where the nodes run them
    (the patchers' load device); ``offload``: unload them from ComfyUI again after each node;
    ``patchers``: ``nodes.patchers.EMOPatchers``, the ComfyUI ModelPatchers holding them;
    ``family``: the checkpoint's ``emo_core.families.ModelFamily``, asked once at load time.
    """

    models: Any
    wav2vec: Any
    device: torch.device
    dtype: torch.dtype
    offload: bool
    checkpoint: str
    wav2vec_name: str
    core_vae: Any = None  # ComfyUI VAE object when one was connected (decodes LATENT too)
    patchers: Any = None
    family: Any = None  # filled from ``models`` when not given

    def __post_init__(self):
        if self.family is None:
            from emo_core.families import family_of

            object.__setattr__(self, "family", family_of(self.models))

    @property
    def latent_scale(self) -> float:
        """SD VAE scaling factor: pipeline latents = VAE-space latents * scale."""
        return self.family.latent_format.scale


@dataclass(frozen=True)
class EMOReference:
    """Encoded reference: ``encoded`` is ``emo_core.pipeline.reference.EncodedReference``
    (latents ``(1, 4, S/8, S/8)`` and the ``(S, S, 3)`` uint8 crop)."""

    encoded: Any
    crop_policy: str
    # The family's per-video conditions of the crop (``ModelFamily.reference_conditions``;
    # Hallo: face embedding + region masks), computed by Encode Reference; None for EMO.
    conditions: Any = None

    @property
    def size(self) -> int:
        return int(self.encoded.image.shape[0])


@dataclass(frozen=True)
class EMOCrop:
    """Where Encode Reference's square came from: ``box`` is ``emo_core.face.crop.CropBox`` in
    pixels of the source image of ``image_size`` (H, W); Frames to Video pastes frames back."""

    box: Any
    image_size: tuple[int, int]


@dataclass(frozen=True)
class EMOAudio:
    """``features``: the checkpoint family's audio front-end output (``windows (F', 2m+1, L,
    C)``, ``F' >= num_frames``; ``front_end`` names the family front-end that made them)."""

    features: AudioFeatures

    @property
    def num_frames(self) -> int:
        return int(self.features.num_frames)

    @property
    def fps(self) -> float:
        return float(self.features.fps)


@dataclass(frozen=True)
class EMOSpeed:
    """Head-speed request, resolved to ``(F,)`` deg/frame once the frame count is known.

    ``mode``: ``"constant"`` (``value``), ``"keyframes"`` (``keyframes`` string, needs fps) or
    ``"measured"`` (``measured``: ``(M,)`` deg/frame from a driving video, stretched to F).
    ``num_frames`` 0 means "follow the audio".
    """

    mode: str
    value: float = 0.0
    keyframes: str = ""
    measured: np.ndarray | None = field(default=None, compare=False)
    num_frames: int = 0

    def resolve(self, num_frames: int, fps: float) -> np.ndarray:
        """-> ``(num_frames,)`` float32 deg/frame."""
        from emo_core import speed as emo_speed

        if self.mode == "constant":
            curve = np.asarray(emo_speed.constant_speed(self.value, num_frames))
        elif self.mode == "keyframes":
            curve = np.asarray(emo_speed.keyframed_speed(self.keyframes, num_frames, fps))
        else:
            curve = emo_speed.stretch_speeds(self.measured, num_frames)
        return curve.astype(np.float32).reshape(num_frames)
