"""Generate a talking cartoon: a procedural face as the reference, any speech as the audio.

The tiny weights trained by ``prove-learning`` work on these faces only. The face mask comes from
the known head box (MediaPipe's detector is for photos, not cartoons). Used by the proof's
evaluation and by ``python -m emo_core demo --talking-cartoon``.
"""

from __future__ import annotations

import numpy as np
import torch

from ...audio.features import extract_audio_features
from ...pipeline.reference import encode_reference
from .clips import face_box
from .faces import Identity, render_face


def cartoon_mask(identity: Identity, size: int) -> torch.Tensor:
    """``(size, size)`` float mask, 1 inside the head box (hair included, any roll)."""
    x, y, w, h = (int(round(v)) for v in face_box(identity, size))
    mask = torch.zeros(size, size)
    mask[max(y, 0):y + h, max(x, 0):x + w] = 1.0
    return mask


def generate_talking_cartoon(pipeline, wav2vec, identity: Identity, waveform: torch.Tensor,
                             sample_rate: int, speed, settings, size: int = 64,
                             progress=None) -> np.ndarray:
    """``waveform: (T,) | (C, T)``, ``speed``: deg/frame (float or ``(F,)``) ->
    ``(F, size, size, 3)`` uint8 frames, F = round(seconds x settings.fps). ``progress``: the
    pipeline's ``progress(done, total)`` callback."""
    reference = encode_reference(pipeline.models, render_face(identity, 0.0, 0.0, size))
    audio = extract_audio_features(wav2vec, waveform, sample_rate, settings.fps)
    latents = torch.cat(list(pipeline.generate_latents(
        reference, audio, cartoon_mask(identity, size), torch.as_tensor(speed, dtype=torch.float32),
        settings, progress)))
    return np.concatenate(list(pipeline.decode_latents(latents, 16)))


def loudness_per_frame(waveform: torch.Tensor, sample_rate: int, fps: float,
                       frames: int) -> np.ndarray:
    """``(frames,)`` RMS of the mono mix over each video frame's span of the audio."""
    mono = waveform.reshape(-1, waveform.shape[-1]).float().mean(0).numpy()
    bounds = np.round(np.arange(frames + 1) * sample_rate / fps).astype(int)
    return np.array([np.sqrt(np.mean(mono[a:b] ** 2)) if b > a else 0.0
                     for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
