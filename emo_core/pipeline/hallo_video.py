"""A whole Hallo-variant video: clips of ``clip_frames`` chained by decoded motion frames.

Hallo's loop (scripts/inference.py): one global generator seeded once, one ``randn((1, 4, f, h,
w))`` per clip; clip c uses audio windows ``[c f, (c + 1) f)`` of the features padded to a
multiple of the clip; the next clip's motion frames are the last ``n`` decoded frames; the video
is cropped to the audio's frame count. Each clip is decoded once (batched) and its last ``n``
frames are re-encoded for the next clip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..errors import EMOCancelled, EMOInputError
from .hallo import (
    HalloConditions,
    HalloSampling,
    clip_inputs,
    decode_frames,
    encode_pixels,
    sample_hallo_clip,
)


@dataclass(frozen=True)
class HalloClip:
    """One generated clip: ``latents (1, f, 4, h, w)``, ``frames (k, 3, H, W)`` in [0, 1]
    (k <= f: the last clip is cropped to the audio length)."""

    index: int
    latents: torch.Tensor
    frames: torch.Tensor


@torch.no_grad()
def generate_hallo_clips(models, reference_pixels: torch.Tensor, audio_windows: torch.Tensor,
                         num_frames: int, conditions: HalloConditions, sampling: HalloSampling,
                         seed: int = 42, clip_frames: int = 16, motion_frames: int = 2,
                         decode_batch: int = 8, progress: Callable | None = None,
                         cancel: Callable | None = None, on_step: Callable | None = None,
                         speed: torch.Tensor | None = None) -> Iterator[HalloClip]:
    """``reference_pixels: (1, 3, H, W)`` in [-1, 1]; ``audio_windows: (F, 5, L, C)`` with
    ``F >= clips x clip_frames`` (see ``audio.hallo_features``); yields one clip at a time.
    ``progress(done, total)`` counts steps; ``on_step(clip, step, latents)`` sees each step.
    ``speed: (num_frames,)`` deg/frame, used by checkpoints with speed layers
    (``init-checkpoint --from-hallo``); windows run over the whole video as in EMO."""
    clips = math.ceil(num_frames / clip_frames)
    if num_frames < 1 or audio_windows.shape[0] < clips * clip_frames:
        raise EMOInputError(f"audio windows cover {audio_windows.shape[0]} frames, need "
                            f"{clips * clip_frames} for {num_frames} frames in clips of "
                            f"{clip_frames}; compute them with clip_frames={clip_frames}")
    vae = models.vae
    if vae is None:
        raise EMOInputError("the Hallo checkpoint has no VAE inside; convert it with "
                            "pretrained_models/sd-vae-ft-mse present")
    generator = torch.Generator("cpu").manual_seed(seed)
    reference = encode_pixels(vae, reference_pixels, sampling.latent_scale)
    motion = reference[:, None].expand(1, motion_frames, *reference.shape[1:])
    height, width = reference.shape[-2:]
    param = next(models.backbone.parameters())
    speed_tokens = _speed_tokens(models, speed, num_frames, clips * clip_frames, param)
    face = models.face_locator(conditions.face_region)  # same for every clip: once per video
    for index in range(clips):
        if cancel is not None and cancel():
            raise EMOCancelled(f"cancelled before clip {index + 1} of {clips}")
        windows = audio_windows[index * clip_frames:(index + 1) * clip_frames]
        tokens = models.audio_projection(windows[None].to(param.device, param.dtype))
        span = slice(index * clip_frames, (index + 1) * clip_frames)
        inputs = clip_inputs(models, conditions, tokens, reference, motion,
                             speed_tokens=None if speed_tokens is None else speed_tokens[:, span],
                             face=face)
        # Hallo draws (b, c, f, h, w) noise; the Backbone takes (b, f, c, h, w).
        noise = torch.randn((1, reference.shape[1], clip_frames, height, width),
                            generator=generator).permute(0, 2, 1, 3, 4)

        def step_done(step, latents, index=index):
            if on_step is not None:
                on_step(index, step, latents)
            if progress is not None:
                progress(index * sampling.steps + step + 1, clips * sampling.steps)

        latents = sample_hallo_clip(models, noise.to(param.device, param.dtype), inputs,
                                    sampling, on_step=step_done)
        frames = torch.cat([decode_frames(vae, chunk, sampling.latent_scale)
                            for chunk in latents[0].split(decode_batch)])
        motion = encode_pixels(vae, frames[-motion_frames:] * 2 - 1, sampling.latent_scale)[None]
        keep = min(clip_frames, num_frames - index * clip_frames)
        yield HalloClip(index, latents, frames[:keep])


def _speed_tokens(models, speed, num_frames: int, padded: int, param) -> torch.Tensor | None:
    """``speed: (num_frames,)`` -> speed tokens ``(1, padded, S, Ds)`` (the last frame's speed
    repeats into the padding); None without speed or speed layers."""
    if speed is None or models.speed_encoder is None:
        return None
    speed = torch.as_tensor(speed, dtype=torch.float32).flatten()
    if speed.shape[0] != num_frames:
        raise EMOInputError(f"speed has {speed.shape[0]} values, the video {num_frames} frames")
    speed = torch.cat([speed, speed[-1:].expand(padded - num_frames)])
    return models.speed_encoder(speed[None].to(param.device)).to(param.dtype)
