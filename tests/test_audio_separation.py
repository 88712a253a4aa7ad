"""Vocal separation (emo_core.audio.separation) with tiny ONNX models of Kim_Vocal_2's signature:
input "input" (1, 4, 3072, 256) -> output (1, 4, 3072, 256), the real STFT sizes (n_fft 7680, hop
1024), so chunking, overlap-add, trimming and the channel layout are exercised as for the real
model. An identity model must give the input back (everything audible lies inside the model's
band: bins 3..3071 = 17 Hz .. 17.6 kHz at 44.1 kHz)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")  # test-only dependency (pinned in .ci/requirements-ci.txt)
pytest.importorskip("onnxruntime")

from emo_core.audio.separation import (  # noqa: E402
    SEPARATION_RATE,
    MDXParams,
    demix,
    load_separator,
    separate_vocals,
)
from emo_core.audio.waveform import to_mono_16k  # noqa: E402
from emo_core.errors import EMOInputError  # noqa: E402
from tests.onnx_tiny_models import build_separator  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio_separator")
    return {op: load_separator(build_separator(folder / f"{op}.onnx", op))
            for op in ("identity", "half", "swap")}


def _tones(seconds, rate, freqs, seed):
    """Band-limited test signal: random-phase sines with slow amplitude modulation."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(rng.uniform(0.3, 1) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) for f in freqs)
    wave *= 1 + 0.5 * np.sin(2 * np.pi * 1.3 * t)
    # 0.1 s fades: a hard (or short) start puts energy outside the model's band (< 17 Hz,
    # > 17.6 kHz), which MDX drops, so no band-limited model could return it
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.1)
    wave *= 0.5 - 0.5 * np.cos(np.pi * fade)
    return (wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture(scope="module")
def stereo():
    """7 s at 44.1 kHz: 3 chunks (the last one partial), different content per channel."""
    left = _tones(7.0, SEPARATION_RATE, [330, 440, 1234, 5000, 12000], 1)
    right = _tones(7.0, SEPARATION_RATE, [300, 2500, 9000], 2)
    return np.stack([left, right]) * 0.5


def test_chunk_layout_is_audio_separators():
    params = MDXParams()
    assert (params.trim, params.chunk, params.gen_size) == (3840, 261120, 253440)
    # 256 STFT frames per chunk: the model's dim_t
    assert 1 + params.chunk // params.hop == params.dim_t


def test_identity_model_returns_the_input(models, stereo):
    """Overlap-added chunks of an identity model reproduce the mix everywhere, including the chunk
    seams (at 195840 and 391680 + trim) and both ends; the error is float32 STFT round-off."""
    out = demix(stereo, models["identity"])
    assert out.shape == stereo.shape and out.dtype == np.float32
    error = np.abs(out - stereo)
    assert error.max() < 1e-4, error.max()
    seam = 195840 - 3840
    assert error[:, seam - 2000:seam + 2000].max() < 1e-4


def test_model_output_is_used_per_channel(models, stereo):
    np.testing.assert_allclose(demix(stereo, models["half"]), 0.5 * stereo, atol=1e-4)
    # the model's channels 0-1 are the left spectrum, 2-3 the right: swapping them swaps L / R
    np.testing.assert_allclose(demix(stereo, models["swap"]), stereo[::-1], atol=1e-4)


def test_separate_vocals_at_16k(models):
    """16 kHz mono in -> 44.1 kHz stereo -> identity model -> x compensate (1.009) -> 16 kHz mono.
    Compared with the same two resamplings without the model (they alone cost 1.6e-3 on the 5.5 kHz
    tone: the sinc filter's passband droop), the separation path adds only float32 round-off."""
    import torchaudio.functional as AF

    mono = _tones(3.0, 16_000, [150, 700, 2200, 5500], 3) * 0.5
    vocals, rate = separate_vocals(torch.from_numpy(mono), 16_000, None, session=models["identity"])
    assert rate == 16_000 and vocals.dtype == torch.float32 and vocals.shape == (48_000,)
    round_trip = to_mono_16k(AF.resample(torch.from_numpy(mono)[None], 16_000, SEPARATION_RATE),
                             SEPARATION_RATE).numpy()
    assert np.abs(vocals.numpy() - 1.009 * round_trip).max() < 1e-4
    assert np.abs(vocals.numpy() - 1.009 * mono)[100:-100].max() < 2.5e-3
    # a loud clip (peak 1.5) is limited to peak 0.9 before the model and again after the x 1.009
    # gain: the vocals are the input scaled to peak 0.9 (peaks measured at 44.1 kHz, where the
    # upsampled waveform's peak may differ slightly from the 16 kHz samples': scale within 1 %)
    loud, _ = separate_vocals(torch.from_numpy(mono * 3.0), 16_000, None, session=models["identity"])
    loud, ref = loud.numpy()[100:-100], mono[100:-100]
    scale = float(loud @ ref / (ref @ ref))
    assert scale == pytest.approx(0.9 / 0.5, rel=0.01)
    assert np.abs(loud - scale * ref).max() < 4e-3
    assert np.abs(loud).max() <= 0.9 + 4e-3


def test_missing_or_wrongbuild_separator(tmp_path):
    with pytest.raises(EMOInputError) as info:
        separate_vocals(np.zeros((2, 1000), np.float32), 44_100, tmp_path)
    text = str(info.value)
    assert "Kim_Vocal_2.onnx" in text and "audio_separator" in text
    assert "fudan-generative-ai/hallo" in text and str(tmp_path) in text
    wrong = load_separator(build_separator(tmp_path / "Kim_Vocal_2.onnx", "identity", [1, 4, 2048, 256]))
    with pytest.raises(EMOInputError, match="expected"):
        separate_vocals(np.zeros((2, 1000), np.float32), 44_100, tmp_path, session=wrong)
