"""Synthetic speech-like audio whose loudness envelope is known exactly.

Syllables are voiced harmonic sounds (random pitch, vowel-like formant colouring per syllable)
shaped by a raised-cosine loudness envelope and separated by pauses; the envelope per video frame
is what the cartoon mouth follows.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000


def syllable_envelope(rng: np.random.Generator, seconds: float,
                      rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(T,)`` loudness envelope in [0, 1]: syllables of 0.1-0.3 s with pauses of 0.04-0.25 s."""
    total = int(round(seconds * rate))
    envelope = np.zeros(total)
    position = int(rng.uniform(0.0, 0.15) * rate)
    while position < total:
        length = int(rng.uniform(0.10, 0.30) * rate)
        peak = rng.uniform(0.35, 1.0)
        shape = np.sin(np.linspace(0, np.pi, length)) ** 2 * peak
        end = min(position + length, total)
        envelope[position:end] = shape[:end - position]
        position = end + int(rng.uniform(0.04, 0.25) * rate)
    return envelope


def voiced_carrier(rng: np.random.Generator, envelope: np.ndarray,
                   rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(T,)`` harmonic sound with a gliding pitch and slowly changing formants."""
    total = envelope.shape[0]
    t = np.arange(total) / rate
    f0 = rng.uniform(100, 220) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    formant1 = rng.uniform(300, 800) + 150 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
    formant2 = rng.uniform(900, 2200) + 300 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
    signal = np.zeros(total)
    for k in range(1, 30):
        frequency = k * f0
        gain = (np.exp(-((frequency - formant1) / 150) ** 2)
                + 0.6 * np.exp(-((frequency - formant2) / 250) ** 2) + 0.05) / k ** 0.5
        signal += gain * np.sin(k * phase) * (frequency < rate / 2)
    return signal / (np.abs(signal).max() + 1e-9)


def synthetic_speech(rng: np.random.Generator, seconds: float,
                     rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """``(waveform (T,) float32 in [-1, 1], envelope (T,))``; a faint noise floor keeps pauses
    from being digital silence (which the audio front-end refuses as a whole clip)."""
    envelope = syllable_envelope(rng, seconds, rate)
    waveform = 0.8 * envelope * voiced_carrier(rng, envelope, rate)
    waveform += 0.002 * rng.standard_normal(waveform.shape)
    return waveform.astype(np.float32), envelope


def frame_envelope(envelope: np.ndarray, num_frames: int, fps: float,
                   rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(num_frames,)``: mean envelope over each video frame's time span."""
    edges = np.round(np.arange(num_frames + 1) * rate / fps).astype(int)
    edges = np.clip(edges, 0, envelope.shape[0])
    return np.array([envelope[a:b].mean() if b > a else 0.0
                     for a, b in zip(edges[:-1], edges[1:], strict=True)])
