"""``generate`` with a Hallo-variant checkpoint: image + audio file -> mp4, as Hallo makes it.

Hallo's inference semantics: the reference image is resized to the video size (a square image is
expected, as Hallo's README asks), the face embedding and the region masks come from the image
as loaded (``emo_core.face.embedding`` / ``emo_core.face.hallo_masks``, imported only here), the
audio front-end is Hallo's (``audio.hallo_features``), clips of 16 + 2 motion frames, and the
video is cropped to the audio's frame count. EMO-only options (speed inputs without speed layers,
paste-back) have no meaning for these weights: they are ignored with a warning, never an error;
a checkpoint with speed layers added (``init-checkpoint --from-hallo``) uses the speed input.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..errors import EMOInputError
from .hallo import HalloConditions, HalloSampling

logger = logging.getLogger(__name__)

HALLO_FACE_HINT = ("a Hallo checkpoint needs a face embedding: pass the insightface models "
                   "folder (Hallo's pretrained_models/face_analysis/models, or ComfyUI "
                   "models/insightface/models/buffalo_l) as face_analysis")


# GenerationSettings fields Hallo's sampling does not read -> what it does instead. Warned about
# only when set to neither the EMO default (a ComfyUI widget or CLI flag always has a value) nor
# Hallo's own value (see ``hallo_values``).
HALLO_FIXED_SETTINGS = {
    "guidance_mode": "one joint CFG scale (guidance_reference sets it)",
    "guidance_audio": "one joint CFG scale (guidance_reference sets it)",
    "guidance_start": "CFG at every step",
    "guidance_end": "CFG at every step",
    "guidance_refresh": "CFG at every step",
    "frames_per_clip": "the checkpoint's clip length (its motion modules are trained on it)",
    "motion_frames": "the checkpoint's motion frames (its motion modules are trained on them)",
    "first_clip_motion": "the reference as the first clip's motion frames",
    "scheduler": "its own DDIM (v-prediction, zero terminal SNR, trailing)",
    "prediction_type": "v-prediction",
}


def hallo_values(sampling_config: dict) -> dict:
    """The GenerationSettings values that say what Hallo does anyway (never warned about)."""
    return {"guidance_mode": "joint", "guidance_audio": None, "guidance_start": 0.0,
            "guidance_end": 1.0, "guidance_refresh": 1,
            "frames_per_clip": sampling_config.get("clip_frames", 16),
            "motion_frames": sampling_config.get("motion_frames", 2),
            "first_clip_motion": "reference", "scheduler": "ddim-vpred-trailing",
            "prediction_type": "v_prediction"}


def warn_emo_only_options(request, sampling_config: dict, speed_layers: bool = False) -> list[str]:
    """Warnings (logged and returned) for request options a Hallo checkpoint cannot use
    (``speed_layers``: the checkpoint has them, from ``init-checkpoint --from-hallo``)."""
    ignored = []
    if not speed_layers and (request.speed is not None or request.speed_keyframes is not None
                             or request.speed_video is not None):
        ignored.append("the speed input (Hallo weights have no speed layers)")
    if request.paste_back:
        ignored.append("paste-back (Hallo animates the whole resized image, there is no crop)")
    ignored += ignored_settings(request.settings, sampling_config)
    for what in ignored:
        logger.warning("Hallo checkpoint: ignoring %s", what)
    return ignored


def ignored_settings(settings, sampling_config: dict) -> list[str]:
    """The EMO-only sampling settings set to neither the EMO default nor Hallo's own value,
    each with what Hallo uses instead."""
    from .settings import GenerationSettings

    default, own = GenerationSettings(), hallo_values(sampling_config)
    return [f"{name}={getattr(settings, name)!r} (Hallo uses {why})"
            for name, why in HALLO_FIXED_SETTINGS.items()
            if getattr(settings, name) not in (getattr(default, name), own[name])]


def hallo_sampling(models, settings) -> HalloSampling:
    """Hallo's sampling from the checkpoint with the user's steps; ``guidance_reference`` is the
    joint CFG scale when changed from the EMO default (else the checkpoint's, 3.5 for Hallo)."""
    from .settings import GenerationSettings

    overrides = {"steps": settings.steps}
    if settings.guidance_reference != GenerationSettings().guidance_reference:
        overrides["guidance_scale"] = float(settings.guidance_reference)
    sampling = HalloSampling.from_models(models, **overrides)
    logger.info("Hallo sampling: %d steps, CFG %.2f, motion scale %s, scheduler %s",
                sampling.steps, sampling.guidance_scale, list(sampling.motion_scale),
                {k: sampling.scheduler[k] for k in ("prediction_type", "timestep_spacing")
                 if k in sampling.scheduler})
    return sampling


def build_hallo_conditions(image: np.ndarray, request, size: int) -> HalloConditions:
    """Face embedding + region masks for the reference image as loaded (Hallo computes both on
    the original file); ``size``: the video side."""
    if getattr(request, "face_analysis", None) is None:
        raise EMOInputError(HALLO_FACE_HINT)
    from ..face.embedding import FaceEmbedder
    from ..face.hallo_masks import hallo_region_masks

    embedding = FaceEmbedder(request.face_analysis).embed(image, zeros_if_no_face=True)
    masks = hallo_region_masks(image, request.mediapipe, size // 8)
    return HalloConditions(torch.from_numpy(np.asarray(embedding, np.float32))[None],
                           masks.face_region[None], masks.full, masks.face, masks.lip)


def reference_pixels(image: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, size, size) in [-1, 1], PIL bilinear as Hallo's Resize."""
    from PIL import Image

    height, width = image.shape[:2]
    if height != width:
        logger.warning("Hallo expects a square reference image; %dx%d is stretched to %dx%d "
                       "as Hallo does (crop it square for correct proportions)",
                       width, height, size, size)
    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    return torch.from_numpy(resized.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(k, 3, H, W) in [0, 1] -> (k, H, W, 3) uint8."""
    return (frames.float() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def generate_hallo_video(request, progress=None, cancel=None):
    """The Hallo branch of :func:`emo_core.pipeline.run.generate_video`."""
    from ..audio.hallo_features import hallo_audio_features, hallo_audio_windows
    from ..audio.waveform import load_audio_file, to_mono_16k
    from ..image import load_image_file
    from ..io.emo_checkpoint import load_emo_checkpoint
    from ..io.wav2vec import load_wav2vec
    from .hallo_video import generate_hallo_clips
    from .run import _check_output, _speed_curve, check_not_silent, speech_waveform
    from .runtime import resolve_device, resolve_dtype
    from .video import Mp4Writer

    settings = request.settings.validate()
    _check_output(request.out)
    device = resolve_device(request.device)
    dtype = resolve_dtype(request.dtype, device)
    models = load_emo_checkpoint(request.checkpoint, device=device, dtype=dtype)
    speed_layers = models.speed_encoder is not None
    warn_emo_only_options(request, models.sampling, speed_layers)
    if request.prepare_models is not None:
        request.prepare_models(models)
    sampling = hallo_sampling(models, settings)
    layout = models.sampling
    fps, clip, motion = layout.get("fps", 25), layout.get("clip_frames", 16), \
        layout.get("motion_frames", 2)
    if float(settings.fps) != float(fps):
        logger.warning("Hallo checkpoint: video runs at its %s fps, not %s", fps, settings.fps)

    image = load_image_file(request.image)
    conditions = request.hallo_conditions or build_hallo_conditions(image, request, settings.size)
    waveform, sample_rate = load_audio_file(request.audio)
    check_not_silent(waveform, request.audio, request.allow_silence)
    wav2vec = load_wav2vec(request.wav2vec, device=device)
    speech = to_mono_16k(*speech_waveform(request, waveform, sample_rate))
    features, num_frames = hallo_audio_features(wav2vec, speech.to(device), fps=int(fps),
                                                clip_frames=clip)
    del wav2vec
    windows = hallo_audio_windows(features)
    speed = _speed_curve(request, num_frames, fps) if speed_layers else None
    pixels = reference_pixels(image, settings.size).to(device, dtype)
    conditions = conditions_on(conditions, device, dtype)
    with Mp4Writer(request.out, fps, settings.size, settings.size,
                   audio=(waveform, sample_rate)) as writer:
        for result in generate_hallo_clips(models, pixels, windows, num_frames, conditions,
                                           sampling, seed=settings.seed, clip_frames=clip,
                                           motion_frames=motion,
                                           decode_batch=settings.decode_batch,
                                           progress=progress, cancel=cancel, speed=speed):
            writer.write(frames_to_uint8(result.frames))
    logger.info("wrote %d frames to %s", writer.frames_written, request.out)
    return request.out


def conditions_on(conditions: HalloConditions, device, dtype) -> HalloConditions:
    def move(value):
        if isinstance(value, list):
            return [move(v) for v in value]
        return torch.as_tensor(value).to(device=device, dtype=dtype)

    return HalloConditions(*(move(getattr(conditions, name)) for name in (
        "face_embedding", "face_region", "full_masks", "face_masks", "lip_masks")))
