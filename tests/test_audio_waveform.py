"""Decoding, mono mix, 16 kHz resampling and input validation of emo_core.audio.waveform."""

from __future__ import annotations

import logging
import math
import wave

import av
import numpy as np
import pytest
import torch

from emo_core.audio.waveform import load_audio_file, resample_in_blocks, to_mono_16k
from emo_core.errors import EMOInputError
from tests.conftest import fixture_path


def read_wav_int16(path) -> tuple[np.ndarray, int]:
    """Reference reader independent of PyAV (stdlib ``wave``): ``(C, T)`` int16 and rate."""
    with wave.open(str(path)) as handle:
        count, channels = handle.getnframes(), handle.getnchannels()
        data = np.frombuffer(handle.readframes(count), "<i2").reshape(count, channels).T
        return data, handle.getframerate()


def encode(path, data: np.ndarray, rate: int, codec: str) -> None:
    """Write ``data: (C, T)`` int16 with PyAV's encoder ``codec`` (container from the suffix)."""
    layout = "mono" if data.shape[0] == 1 else "stereo"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        for start in range(0, data.shape[1], 4096):
            block = np.ascontiguousarray(data[:, start:start + 4096].T).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 4096) -> float:
    """Highest normalised correlation of 1 s of ``a`` against ``b`` shifted by 0..max_lag."""
    start = len(a) // 3
    piece = a[start:start + 44100]
    best = -1.0
    for lag in range(0, max_lag):
        other = b[start + lag:start + lag + len(piece)]
        if len(other) < len(piece):
            break
        denom = np.linalg.norm(piece) * np.linalg.norm(other)
        best = max(best, float(piece @ other / denom))
    return best


@pytest.mark.parametrize("name", ["speech_en_16k_mono.wav", "speech_en_44k_stereo.wav",
                                  "speech_arctic_a0007.wav"])
def test_wav_fixtures_decode_bit_exact(name):
    path = fixture_path(name)
    reference, rate = read_wav_int16(path)
    waveform, sample_rate = load_audio_file(path)
    assert sample_rate == rate
    assert waveform.dtype == torch.float32 and tuple(waveform.shape) == reference.shape
    # PCM16 -> float is x / 32768 exactly: no tolerance needed.
    torch.testing.assert_close(waveform, torch.from_numpy(reference / 32768.0).float(),
                               atol=0, rtol=0)


def test_flac_is_lossless(tmp_path):
    reference, rate = read_wav_int16(fixture_path("speech_en_44k_stereo.wav"))
    encode(tmp_path / "speech.flac", reference, rate, "flac")
    waveform, sample_rate = load_audio_file(tmp_path / "speech.flac")
    assert sample_rate == rate and tuple(waveform.shape) == reference.shape
    assert torch.equal(waveform, torch.from_numpy(reference / 32768.0).float())


@pytest.mark.parametrize(("suffix", "codec"), [(".mp3", "libmp3lame"), (".m4a", "aac")])
def test_lossy_files_decode_to_the_same_sound(tmp_path, suffix, codec):
    reference, rate = read_wav_int16(fixture_path("speech_en_44k_stereo.wav"))
    path = tmp_path / f"speech{suffix}"
    encode(path, reference, rate, codec)
    waveform, sample_rate = load_audio_file(path)
    assert sample_rate == rate and waveform.shape[0] == 2
    # Encoders add priming/padding (AAC 1024-2048 samples, MP3 up to ~1700): allow 0.1 s.
    assert abs(waveform.shape[1] - reference.shape[1]) < 0.1 * rate
    # Lossy at default bitrate keeps speech nearly intact; 0.9 fails for wrong channels/rates.
    corr = best_correlation(reference[0] / 32768.0, waveform[0].numpy().astype(np.float64))
    assert corr > 0.9, corr


def test_ogg_opus_at_48k(tmp_path):
    rate = 48_000
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate) * 32767).astype("<i2")[None]
    encode(tmp_path / "tone.ogg", tone, rate, "libopus")
    waveform, sample_rate = load_audio_file(tmp_path / "tone.ogg")
    assert sample_rate == rate and waveform.shape[0] == 1
    assert abs(waveform.shape[1] - rate) < 0.05 * rate
    rms = float(waveform[0, rate // 4: 3 * rate // 4].pow(2).mean().sqrt())
    assert abs(rms - 0.5 / math.sqrt(2)) < 0.05  # a 0.5-amplitude sine has RMS 0.354


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(EMOInputError, match="does not exist"):
        load_audio_file(tmp_path / "missing.wav")
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(EMOInputError, match="junk.mp3"):
        load_audio_file(junk)
    silent_video = tmp_path / "video.mp4"
    with av.open(str(silent_video), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 32, 32
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(EMOInputError, match="no audio stream") as info:
        load_audio_file(silent_video)
    assert "video.mp4" in str(info.value)


def test_layouts_mix_to_the_same_mono():
    left, right = torch.rand(16000) - 0.5, torch.rand(16000) - 0.5
    stereo = torch.stack([left, right])
    expected = (left + right) / 2
    assert torch.allclose(to_mono_16k(stereo, 16000), expected)
    assert torch.allclose(to_mono_16k(stereo[None], 16000), expected)  # ComfyUI (1, C, T)
    assert torch.equal(to_mono_16k(left, 16000), left)  # (T,)
    assert torch.allclose(to_mono_16k(stereo.numpy(), 16000), expected)  # numpy accepted
    six = torch.rand(6, 800)
    assert torch.allclose(to_mono_16k(six, 16000), six.mean(0))


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 24000, 44100, 48000, 96000])
def test_odd_rates_resample_to_16k(rate):
    seconds = 0.5
    t = torch.arange(int(rate * seconds), dtype=torch.float64) / rate
    tone = torch.sin(2 * math.pi * 440 * t).float()
    out = to_mono_16k(tone[None].expand(2, -1), rate)
    assert out.dtype == torch.float32 and out.ndim == 1
    assert out.shape[0] == math.ceil(len(tone) * 16000 / rate)
    # The 440 Hz tone survives: compare with the ideal 16 kHz sine away from filter edges
    # (sinc resampling error is well under 1e-2 in the passband).
    ideal = torch.sin(2 * math.pi * 440 * torch.arange(out.shape[0], dtype=torch.float64) / 16000)
    assert (out[800:-800].double() - ideal[800:-800]).abs().max() < 1e-2


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_block_resampling_equals_one_call(rate):
    import torchaudio.functional as AF

    stereo = torch.randn(2, rate * 2 + 123) * 0.1
    one_call = AF.resample(stereo.mean(0), orig_freq=rate, new_freq=16000)
    blocks = resample_in_blocks(stereo, rate, block=5000)  # ~10-20 blocks with margins
    assert blocks.shape == one_call.shape
    # Same inputs and filter taps per output sample; only the conv's summation order may differ.
    torch.testing.assert_close(blocks, one_call, atol=1e-6, rtol=0)


def test_integer_pcm_is_scaled():
    pcm = torch.tensor([[-32768, 0, 16384]], dtype=torch.int16)
    assert torch.equal(to_mono_16k(pcm, 16000), torch.tensor([-1.0, 0.0, 0.5]))
    assert torch.equal(to_mono_16k(np.array([0, 128, 192], np.uint8), 16000),
                       torch.tensor([-1.0, 0.0, 0.5]))


def test_bad_shapes_and_rates_are_clear():
    with pytest.raises(EMOInputError, match="IMAGE"):
        to_mono_16k(torch.rand(1, 64, 64, 3), 16000)
    with pytest.raises(EMOInputError, match="batch has 2 clips"):
        to_mono_16k(torch.rand(2, 1, 1000), 16000)
    with pytest.raises(EMOInputError, match="transpose"):
        to_mono_16k(torch.rand(16000, 2), 16000)
    for empty in (torch.zeros(0), torch.zeros(2, 0), torch.zeros(1, 1, 0)):
        with pytest.raises(EMOInputError, match="audio is empty"):
            to_mono_16k(empty, 16000)
    for rate in (0, -16000, 22050.5, float("nan"), "fast"):
        with pytest.raises(EMOInputError, match="sample rate"):
            to_mono_16k(torch.rand(100), rate)
    with pytest.raises(EMOInputError, match="standard rate"):
        to_mono_16k(torch.rand(1000), 44101)  # would need a multi-GB sinc kernel


def test_non_finite_samples_become_silence(caplog):
    samples = torch.tensor([0.1, float("nan"), float("inf"), -float("inf"), 0.2])
    with caplog.at_level(logging.WARNING, logger="emo_core.audio.waveform"):
        out = to_mono_16k(samples, 16000)
    assert torch.equal(out, torch.tensor([0.1, 0.0, 0.0, 0.0, 0.2]))
    assert "3 NaN/infinite" in caplog.text
    with pytest.raises(EMOInputError, match="no finite samples"):
        to_mono_16k(torch.full((10,), float("nan")), 16000)


def test_silence_is_valid():
    out = to_mono_16k(torch.zeros(2, 44100), 44100)
    assert out.shape == (16000,) and float(out.abs().max()) == 0.0
