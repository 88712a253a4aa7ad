"""Image + audio file -> mp4: the whole EMO run as one function (used by the CLI and the demo)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio.waveform import check_not_silent  # noqa: F401 (re-exported for the CLI)
from ..errors import EMOCancelled, EMOInputError
from ..face.detect import FaceAdvice
from ..face.mask import DEFAULT_MASK_EXPAND
from .pipeline import CancelFn, EMOPipeline, ProgressFn
from .reference import encode_reference
from .runtime import resolve_device, resolve_dtype
from .settings import GenerationSettings
from .video import Mp4Writer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerateRequest:
    """Paths and choices of one run. ``speed`` is a float (deg/frame) or ``None`` when
    ``speed_keyframes`` (``"t:deg, ..."``) or ``speed_video`` (a driving video) is given."""

    checkpoint: Path
    wav2vec: Path
    mediapipe: Path
    image: Path
    audio: Path
    out: Path
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    speed: float | None = 2.0
    speed_keyframes: str | None = None
    speed_video: Path | None = None
    face_index: int = 0
    mask_expand: float = DEFAULT_MASK_EXPAND  # emo_core.face.mask: fraction added on every side
    paste_back: bool = False
    allow_silence: bool = False
    device: str = "auto"
    dtype: str = "auto"
    # Called with the loaded EMOModels before sampling (e.g. to add a civit.ai style delta).
    prepare_models: Callable | None = None
    # Families with per-video conditions (Hallo): insightface models folder, or precomputed
    # conditions (HalloConditions).
    face_analysis: Path | None = None
    hallo_conditions: object | None = None
    # Optional MDX-Net vocal separation model (Kim_Vocal_2.onnx): wav2vec then hears the vocals
    # only, as in Hallo; the video keeps the original soundtrack.
    separate_vocals: Path | None = None


# What a command-line user can change when no face is found (no crop or mask options there).
CLI_FACE_ADVICE = FaceAdvice(
    no_face="pass an --image where the face is larger and closer to frontal, or crop the photo "
            "nearer the face first",
    face_index="--face-index")


@dataclass(frozen=True)
class PreparedPortrait:
    """``original: (H, W, 3)`` uint8; ``crop``: CropBox of the face square in it;
    ``portrait: (S, S, 3)`` uint8 crop; ``mask``: FaceMask on the portrait (Face Locator), or
    None for families that build their own conditions (``conditions``)."""

    original: np.ndarray
    crop: object
    portrait: np.ndarray
    mask: object
    conditions: object = None  # the family's reference_conditions (Hallo: embedding + masks)


def prepare_portrait(request: GenerateRequest, settings: GenerationSettings) -> PreparedPortrait:
    """Image file -> face crop at ``settings.size`` -> Face Locator mask (``mask_expand``)."""
    from ..face.crop import crop_image, face_crop_box
    from ..face.detect import find_face
    from ..face.mask import face_locator_mask
    from ..image import load_image_file

    original = load_image_file(request.image)
    face = find_face(original, request.mediapipe, face_index=request.face_index,
                     advice=CLI_FACE_ADVICE)
    crop = face_crop_box(face, original.shape[:2], out_size=settings.size)
    portrait = crop_image(original, crop)
    mask = face_locator_mask(portrait[None], request.mediapipe, expand_ratio=request.mask_expand,
                             advice=CLI_FACE_ADVICE)
    return PreparedPortrait(original, crop, portrait, mask)


def generate_video(request: GenerateRequest, progress: ProgressFn | None = None,
                   cancel: CancelFn | None = None) -> Path:
    """Run the checkpoint's model family end to end and write ``request.out`` atomically."""
    from ..audio.file_stream import load_speech_track
    from ..audio.waveform import check_audio_file, load_audio_file
    from ..face.crop import paste_back_frames
    from ..face.mask import check_mask_expand
    from ..families import family_of
    from ..image import check_image_file
    from ..io.emo_checkpoint import check_emo_checkpoint, load_emo_checkpoint
    from ..io.wav2vec import check_wav2vec_folder, load_wav2vec
    from ..speed import parse_keyframes

    settings = request.settings.validate()
    check_mask_expand(request.mask_expand, "--mask-expand")
    _check_output(request.out)
    device = resolve_device(request.device)
    dtype = resolve_dtype(request.dtype, device)
    # Cheap checks first (file headers), then the weight files (configs built on the meta
    # device): a bad input fails in seconds, before any model runs.
    if request.speed_keyframes is not None:
        parse_keyframes(request.speed_keyframes)
    check_image_file(request.image)
    check_audio_file(request.audio)
    configs = check_emo_checkpoint(request.checkpoint)
    family = family_of(configs=configs)  # the checkpoint's family, before any model loads
    if family.audio_model is not None:
        if request.wav2vec is None:
            raise EMOInputError(f"--wav2vec is required for {family.title} checkpoints")
        check_wav2vec_folder(request.wav2vec)
    settings = family.resolve_settings(settings)
    prepared = family.prepare_portrait(request, settings)

    track = None
    if family.streams_audio and request.separate_vocals is None:
        # Decoded block by block to a 16 kHz track on disk; the writer decodes the soundtrack
        # from the (open) file at close: the input's samples are never held (issue 22).
        track = load_speech_track(request.audio)
        check_not_silent(torch.tensor([track.peak]), request.audio, request.allow_silence)
        speech, soundtrack = (track, track.sample_rate), track.source
    else:
        waveform, sample_rate = load_audio_file(request.audio)
        check_not_silent(waveform, request.audio, request.allow_silence)
        speech = speech_waveform(request, waveform, sample_rate)
        soundtrack = (waveform, sample_rate)
    models = wav2vec = None
    if family.audio_model is None:  # the audio encoder is inside the checkpoint
        models = load_emo_checkpoint(request.checkpoint, device=device, dtype=dtype,
                                     checked=configs)
        family = family_of(models)
    else:
        wav2vec = load_wav2vec(request.wav2vec, device=device, checked=True)
    # Per clip window where the family's front-end streams (EMO: wav2vec runs while sampling,
    # so the features of an hour are never held); eager otherwise.
    audio = family.streamed_audio_features(wav2vec, *speech, settings.fps, device=device,
                                           cancel=cancel)
    del wav2vec  # streamed windows keep their own reference; eager ones free it here

    if models is None:
        models = load_emo_checkpoint(request.checkpoint, device=device, dtype=dtype,
                                     checked=configs)
    family = family_of(models)  # bound to the loaded models: asked from here on
    speed_given = any(v is not None for v in (request.speed, request.speed_keyframes,
                                              request.speed_video))
    for what in family.ignored_options(speed_given=speed_given, paste_back=request.paste_back,
                                       settings=request.settings):
        logger.warning("%s checkpoint: ignoring %s", family.title, what)
    speed = _speed_curve(request, audio.num_frames, settings.fps) if family.uses_speed() else None
    if request.prepare_models is not None:
        request.prepare_models(models)
    pipeline = EMOPipeline(models, device=device, dtype=dtype, family=family)
    if cancel is not None and cancel():  # the checkpoint load may have taken a while
        raise EMOCancelled("cancelled before encoding the reference")
    reference = encode_reference(models, prepared.portrait, device=device, dtype=dtype)
    mask = None if prepared.mask is None else torch.from_numpy(prepared.mask.image_mask)
    frames = pipeline.generate_frames(reference, audio, mask, speed, settings, progress=progress,
                                      cancel=cancel, conditions=prepared.conditions)
    paste_back = request.paste_back and prepared.crop is not None
    height, width = (prepared.original.shape[:2] if paste_back else (settings.size,) * 2)
    height, width = height - height % 2, width - width % 2  # H.264 needs even sizes
    with Mp4Writer(request.out, settings.fps, width, height, audio=soundtrack) as writer:
        for chunk in frames:
            if paste_back:
                chunk = paste_back_frames(chunk, prepared.original, prepared.crop)
            writer.write(chunk[:, :height, :width])
    if track is not None:
        track.close()  # the 16 kHz track's temporary file and the open input
    logger.info("wrote %d frames to %s", writer.frames_written, request.out)
    return request.out


def speech_waveform(request: GenerateRequest, waveform, sample_rate: int):
    """What wav2vec hears: the vocals when ``request.separate_vocals`` names a model, else the
    audio as loaded. Returns ``(waveform, sample_rate)``."""
    if request.separate_vocals is None:
        return waveform, sample_rate
    from ..audio.separation import separate_vocals

    return separate_vocals(waveform, sample_rate, request.separate_vocals)


def _speed_curve(request: GenerateRequest, num_frames: int, fps: float) -> torch.Tensor:
    from ..speed import constant_speed, keyframed_speed

    chosen = [request.speed_keyframes is not None, request.speed_video is not None]
    if sum(chosen) > 1:
        raise EMOInputError("give only one of speed keyframes or a speed driving video")
    if request.speed_keyframes is not None:
        return torch.as_tensor(keyframed_speed(request.speed_keyframes, num_frames, fps))
    if request.speed_video is not None:
        return _speed_from_video(request, num_frames, fps)
    return torch.as_tensor(constant_speed(request.speed if request.speed is not None else 2.0,
                                          num_frames))


def _speed_from_video(request: GenerateRequest, num_frames: int, fps: float) -> torch.Tensor:
    """Measure head rotation speed on a driving video resampled to ``fps`` (so speeds are in
    degrees per output frame), then stretch the curve over ``num_frames``."""
    from ..face.head_pose import head_rotation_speeds
    from ..video_io import read_video_frames

    # 512 px is plenty for the landmarker and keeps a long HD driving video small in memory.
    frames = read_video_frames(request.speed_video, fps=fps, max_side=512)
    from ..speed import stretch_speeds

    speeds = head_rotation_speeds(frames, request.mediapipe, smooth=2)
    return torch.from_numpy(stretch_speeds(speeds, num_frames))


def _check_output(out: Path) -> None:
    from ..paths import check_output_path

    check_output_path(out, ".mp4", what="--out")
