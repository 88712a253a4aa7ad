"""Hallo entry points kept for callers of the pre-family API (and the golden tests): each is the
one pipeline run with the Hallo family (``emo_core/families/hallo.py``), no loop of its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..families.hallo import HalloConditions, HalloFamily, HalloSampling
from ..families.hallo_parts import clip_inputs, decode_frames, encode_pixels, hallo_denoise

__all__ = ["HalloClip", "HalloConditions", "HalloSampling", "build_hallo_conditions",
           "clip_inputs", "decode_frames", "encode_pixels", "generate_hallo_clips",
           "hallo_denoise", "hallo_sampling", "ignored_settings"]


@dataclass(frozen=True)
class HalloClip:
    """One generated clip: ``latents (1, f, 4, h, w)``, ``frames (k, 3, H, W)`` in [0, 1]
    (k <= f: the last clip is cropped to the audio length)."""

    index: int
    latents: torch.Tensor
    frames: torch.Tensor


def generate_hallo_clips(models, reference_pixels: torch.Tensor, audio_windows: torch.Tensor,
                         num_frames: int, conditions: HalloConditions, sampling: HalloSampling,
                         seed: int = 42, clip_frames: int = 16, motion_frames: int = 2,
                         decode_batch: int = 8, progress: Callable | None = None,
                         cancel: Callable | None = None, on_step: Callable | None = None,
                         speed: torch.Tensor | None = None) -> Iterator[HalloClip]:
    """``reference_pixels: (1, 3, H, W)`` in [-1, 1]; ``audio_windows: (F', 5, L, C)`` (Hallo's
    front-end, padded to whole clips) -> one clip at a time, through ``EMOPipeline``.

    Hallo's released loop, its padded last clip included (``sampling.pad_last_clip`` is set:
    the golden tests compare every clip's latents with Hallo's); ``latents`` of the last clip
    are then ``clip_frames`` long. Generation proper (CLI, nodes) runs the kept frames only."""
    from ..audio.features import AudioFeatures
    from .pipeline import EMOPipeline
    from .reference import EncodedReference
    from .settings import GenerationSettings

    family = HalloFamily(models, sampling=dataclasses.replace(sampling, pad_last_clip=True))
    family.configs = {**family.configs, "sampling": {
        **family.sampling, "clip_frames": clip_frames, "motion_frames": motion_frames}}
    latents = encode_pixels(models.vae, reference_pixels, family.latent_format)
    image = ((reference_pixels[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255)
    reference = EncodedReference(latents, image.to(torch.uint8).cpu().numpy())
    audio = AudioFeatures(audio_windows, int(num_frames), 25.0, torch.zeros(0), "hallo")
    settings = GenerationSettings(steps=sampling.steps, seed=seed, decode_batch=decode_batch,
                                  size=reference.size)
    final: dict[int, torch.Tensor] = {}  # clip -> its latest latents (the final ones at the end)

    def step(clip, k, x):
        final[clip] = x
        if on_step is not None:
            on_step(clip, k, x)

    for index, kept in enumerate(EMOPipeline(models, family=family).generate_latents(
            reference, audio, None, speed, settings, progress, cancel, conditions=conditions,
            on_step=step)):
        frames = torch.cat([decode_frames(models.vae, chunk, family.latent_format)
                            for chunk in final[index][0].split(decode_batch)])
        yield HalloClip(index, final.pop(index), frames[:kept.shape[0]])


def hallo_sampling(models, settings) -> HalloSampling:
    return HalloFamily(models).hallo_sampling(settings)


def ignored_settings(settings, sampling_config: dict) -> list[str]:
    return HalloFamily(configs={"sampling": sampling_config}).ignored_settings(settings)


def build_hallo_conditions(image: np.ndarray, request, size: int) -> HalloConditions:
    return HalloFamily().reference_conditions(
        image, face_analysis=getattr(request, "face_analysis", None), mediapipe=request.mediapipe,
        size=size)
