"""Hallo's audio front-end: a 16 kHz waveform -> per-frame wav2vec2 features, as Hallo computes
them (``AudioProcessor.preprocess`` with ``features: all``).

1. normalise the whole utterance: ``(x - mean) / sqrt(var + 1e-7)`` (Wav2Vec2FeatureExtractor);
2. ``seq = ceil(samples / 16000 * fps)`` frames; zero-pad the NORMALISED signal so that seq
   becomes a multiple of the clip length (``16000 / fps`` samples per missing frame);
3. the wav2vec2 CNN features are linearly interpolated (``align_corners=True``) to seq frames
   BEFORE the feature projection, then the transformer runs over the whole utterance;
4. the outputs of every transformer layer (not the encoder input) are stacked: ``(seq, L, C)``.

Windows: frame i gets the features of frames ``i-2 .. i+2`` (clamped to the sequence).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .wav2vec_parts import encode_layers


def hallo_normalize(waveform: torch.Tensor) -> torch.Tensor:
    """``(n,)`` float -> zero-mean unit-variance float32 (statistics in float64)."""
    x = waveform.double()
    return ((x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)).float()


def hallo_frame_count(num_samples: int, sample_rate: int = 16000, fps: int = 25) -> int:
    """Hallo's audio length in video frames: ``ceil(samples / rate * fps)``."""
    return math.ceil(num_samples / sample_rate * fps)


@torch.no_grad()
def hallo_audio_features(wav2vec, waveform: torch.Tensor, fps: int = 25, clip_frames: int = 16,
                         sample_rate: int = 16000) -> tuple[torch.Tensor, int]:
    """``waveform: (n,)`` 16 kHz mono -> ``(features (seq_padded, layers, C), audio_frames)``."""
    if waveform.ndim != 1 or waveform.numel() == 0:
        raise ValueError(f"waveform must be a non-empty (n,) tensor, got {tuple(waveform.shape)}")
    values = hallo_normalize(waveform)
    frames = hallo_frame_count(values.numel(), sample_rate, fps)
    seq = frames
    if seq % clip_frames:
        pad = clip_frames - seq % clip_frames
        values = F.pad(values, (0, pad * (sample_rate // fps)))
        seq += pad
    return wav2vec_frame_features(wav2vec, values, seq), frames


@torch.no_grad()
def wav2vec_frame_features(wav2vec, values: torch.Tensor, seq: int) -> torch.Tensor:
    """Steps 3-4 on an already normalised (and padded) signal ``values: (n,)`` -> ``(seq, L, C)``
    float32: Hallo's ``Wav2VecModel`` called with ``seq_len = seq``."""
    param = next(wav2vec.parameters())
    cnn = wav2vec.feature_extractor(values[None].to(param.device, param.dtype))  # (1, C, T)
    cnn = F.interpolate(cnn, size=seq, mode="linear", align_corners=True).transpose(1, 2)
    return encode_layers(wav2vec, cnn[0]).float()  # (seq, layers, C)


def hallo_audio_windows(features: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """``(seq, L, C)`` -> ``(seq, 2 radius + 1, L, C)``: frames i-radius..i+radius, clamped.

    A strided VIEW of the features padded by ``radius`` copies of the first and last rows, not a
    gathered copy: the windows cost the features' memory once, not ``2 radius + 1`` times (an
    hour of Hallo2 audio: 3.3 GB of features, 17 GB as gathered windows)."""
    edge = (radius, *features.shape[1:])
    padded = torch.cat([features[:1].expand(edge), features, features[-1:].expand(edge)])
    return padded.unfold(0, 2 * radius + 1, 1).movedim(-1, 1)
