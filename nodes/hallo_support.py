"""The Hallo branch of the nodes: what a Hallo-converted checkpoint needs that EMO's does not.

A converted Hallo checkpoint (``python -m emo_core convert-hallo``) loads through Load EMO Models
like any other; the other nodes ask :func:`is_hallo` and take these paths:

* Encode Reference: face embedding (insightface ONNX from ``models/insightface``) and Hallo's
  region masks (MediaPipe landmarks) of the square portrait -> ``EMOReference.hallo``;
* Wav2Vec Audio Features: Hallo's audio front-end (all wav2vec layers, padded to whole clips);
* EMO Sampler: Hallo's clips (16 + 2 motion frames, joint CFG, its DDIM), speed ignored with a
  warning.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from emo_core.errors import EMOInputError

from . import comfy_bridge as bridge
from .types import EMOModelsBundle, HalloAudioFeatures

logger = logging.getLogger(__name__)

WRONG_AUDIO = ("emo_audio: these are EMO audio features but the models are a Hallo checkpoint; "
               "connect Wav2Vec Audio Features fed by the same Load EMO Models")


def is_hallo(bundle: EMOModelsBundle) -> bool:
    return getattr(bundle.models.backbone.config, "variant", "emo") == "hallo"


def log_hallo_defaults(models, checkpoint: str) -> None:
    """One line with the sampling a Hallo checkpoint brings (what the EMO Sampler will use)."""
    from emo_core.pipeline.settings import GenerationSettings

    cfg = models.sampling
    scheduler = cfg.get("scheduler", {})
    logger.info(
        "%s is a Hallo checkpoint: EMO Sampler uses its defaults: %s+%s frames per clip at %s "
        "fps, joint CFG %s, motion scale %s, DDIM %s/%s%s; steps and seed come from the "
        "sampler, guidance_reference replaces the CFG when changed from %g; speed is ignored",
        checkpoint, cfg.get("clip_frames"), cfg.get("motion_frames"), cfg.get("fps"),
        cfg.get("guidance_scale"), cfg.get("motion_scale"), scheduler.get("prediction_type"),
        scheduler.get("timestep_spacing"),
        ", zero terminal SNR" if scheduler.get("rescale_betas_zero_snr") else "",
        GenerationSettings().guidance_reference)


def reference_conditions(portrait: np.ndarray, face_analysis: str):
    """``portrait (S, S, 3)`` uint8 -> HalloConditions (embedding (1, 512), region (1, 3, S, S),
    per-level masks). Hallo computes both on its input image; here that is the square crop."""
    from emo_core.face.embedding import FaceEmbedder
    from emo_core.face.hallo_masks import hallo_region_masks
    from emo_core.pipeline.hallo import HalloConditions

    folder = bridge.face_analysis_dir(face_analysis or bridge.FACE_ANALYSIS_AUTO)
    embedding = FaceEmbedder(folder).embed(portrait, zeros_if_no_face=True)
    masks = hallo_region_masks(portrait, bridge.mediapipe_dir("face_landmarker.task"),
                               portrait.shape[0] // 8)
    return HalloConditions(torch.from_numpy(np.asarray(embedding, np.float32))[None],
                           masks.face_region[None], masks.full, masks.face, masks.lip)


def audio_features(bundle: EMOModelsBundle, waveform, sample_rate: int, fps: float
                   ) -> HalloAudioFeatures:
    """Hallo's audio front-end on the bundle's wav2vec2 (at the checkpoint's fps)."""
    from emo_core.audio.hallo_features import hallo_audio_features, hallo_audio_windows
    from emo_core.audio.waveform import to_mono_16k

    cfg = bundle.models.sampling
    own_fps, clip = int(cfg.get("fps", 25)), int(cfg.get("clip_frames", 16))
    if abs(float(fps) - own_fps) > 1e-6:
        logger.warning("Hallo checkpoint: audio features at its %d fps, not %g (set Frames to "
                       "Video's fps to %d)", own_fps, fps, own_fps)
    wave = to_mono_16k(waveform, sample_rate)
    param = next(bundle.wav2vec.parameters())
    features, frames = hallo_audio_features(bundle.wav2vec, wave.to(param.device, param.dtype),
                                             fps=own_fps, clip_frames=clip)
    return HalloAudioFeatures(windows=hallo_audio_windows(features.cpu()), num_frames=frames,
                              fps=float(own_fps), waveform_16k=wave)


def sample(bundle: EMOModelsBundle, reference, audio, settings, emo_speed, decode_images: bool):
    """The EMO Sampler's Hallo branch -> (latents (F, 4, h, w) VAE space, uint8 frames or None)."""
    from emo_core.pipeline.hallo_run import (
        conditions_on,
        frames_to_uint8,
        hallo_sampling,
        ignored_settings,
        reference_pixels,
    )
    from emo_core.pipeline.hallo_video import generate_hallo_clips

    features = audio.features
    if not isinstance(features, HalloAudioFeatures):
        raise EMOInputError(WRONG_AUDIO)
    if reference.hallo is None:
        raise EMOInputError("reference: encoded for EMO weights; run Encode Reference with "
                            "this Hallo checkpoint's Load EMO Models")
    if emo_speed is not None:
        bridge.node_warning("Hallo checkpoint: ignoring the Speed Embedding input (Hallo "
                            "weights have no speed layers)")
    for what in ignored_settings(settings, bundle.models.sampling):
        bridge.node_warning(f"Hallo checkpoint: ignoring {what}")
    models, device, dtype = bundle.models, bundle.device, bundle.dtype
    sampling = hallo_sampling(models, settings)
    cfg = models.sampling
    pixels = reference_pixels(reference.encoded.image, reference.size).to(device, dtype)
    # Previews as in the EMO loop (ComfyUI's previewer, every step); Hallo's DDIM loop exposes
    # the current sample, not the clean estimate.
    previewer = bridge.latent_previewer(device)
    progress = bridge.ProgressReporter(previewer=previewer)
    on_step = None if previewer is None else (lambda _clip, _step, x: progress.preview(x[0]))
    latents, frames = [], []
    for clip in generate_hallo_clips(
            models, pixels, features.windows, features.num_frames,
            conditions_on(reference.hallo, device, dtype), sampling, seed=settings.seed,
            clip_frames=int(cfg.get("clip_frames", 16)),
            motion_frames=int(cfg.get("motion_frames", 2)), decode_batch=settings.decode_batch,
            progress=progress, cancel=bridge.check_interrupted, on_step=on_step):
        keep = clip.frames.shape[0]
        latents.append(clip.latents[0, :keep].float().cpu() / sampling.latent_scale)
        if decode_images:
            frames.append(frames_to_uint8(clip.frames))
    return torch.cat(latents), (np.concatenate(frames) if decode_images else None)
