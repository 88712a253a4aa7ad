"""The mp4 writer resamples and encodes the audio track a chunk at a time at close: the chunks
equal one whole-track torchaudio resample (float rounding), and no chunk grows with the track's
length (a whole-track resample at close made peak RSS grow ~1.1 MiB per second of audio)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from emo_core.pipeline.video import AUDIO_RATE, fit_audio, fit_audio_chunks


def whole_track(waveform, rate: int, seconds: Fraction) -> np.ndarray:
    """The writer's former close: mono mean, one resample of the whole track, trim/pad."""
    wave = waveform.reshape(-1, waveform.shape[-1]).mean(dim=0)
    if rate != AUDIO_RATE:
        wave = AF.resample(wave, rate, AUDIO_RATE)
    target = round(seconds * AUDIO_RATE)
    wave = torch.nn.functional.pad(wave[:target], (0, max(0, target - wave.shape[0])))
    return wave.clamp(-1.0, 1.0).numpy()


@pytest.mark.parametrize(("rate", "samples", "seconds"), [
    (16000, 16000 * 7 + 123, Fraction(7)),  # trimmed, chunk edges inside the track
    (44100, 44100 * 3 + 5, Fraction(2)),  # rates with gcd 300: stride of 147 input samples
    (22050, 22050 * 3, Fraction(5)),  # padded with silence
    (48000, 96007, Fraction(2)),  # no resampling
    (16000, 48000, Fraction(301, 100)),  # a fractional video length
])
def test_chunks_equal_one_whole_track_resample(rate, samples, seconds):
    waveform = torch.randn(2, samples, generator=torch.Generator().manual_seed(rate)) * 0.3
    expected = whole_track(waveform, rate, seconds)
    got = fit_audio(waveform, rate, seconds)
    assert got.shape == expected.shape == (round(seconds * AUDIO_RATE),)
    # Same convolution on the same samples; only the summation order may differ (1 ulp ~ 6e-8).
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_chunk_size_does_not_grow_with_the_track():
    sizes = {}
    for seconds in (10, 60):
        waveform = torch.zeros(1, 16000 * seconds)
        chunks = list(fit_audio_chunks(waveform, 16000, Fraction(seconds)))
        assert sum(len(c) for c in chunks) == seconds * AUDIO_RATE
        sizes[seconds] = max(len(c) for c in chunks)
    assert sizes[10] == sizes[60] == AUDIO_RATE  # one second at a time
