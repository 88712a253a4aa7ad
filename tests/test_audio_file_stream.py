"""An audio file read block by block (issue 22): the CLI's speech track and the writer's
soundtrack without holding the file's samples.

- ``load_speech_track``'s 16 kHz samples are bit-equal to ``to_mono_16k(load_audio_file(...))``
  (same NaN handling, mix and resampling grid), for 16 kHz mono, 44.1 kHz stereo and a 70 s
  stereo file that crosses several resampling blocks; the file's own length and rate come along
  (the frame count uses them); bad files fail as ``load_audio_file`` does;
- the 16 kHz track lives in an unlinked temporary file, read back a range at a time;
- the writer's soundtrack decoded from the file at close equals the in-memory one bit for bit,
  for lengths shorter than, equal to and longer than the file (silence padding).
"""

from __future__ import annotations

import wave
from fractions import Fraction

import numpy as np
import pytest
import torch

from emo_core.audio.features import extract_audio_features
from emo_core.audio.file_stream import SpilledSamples, load_speech_track
from emo_core.audio.waveform import load_audio_file, to_mono_16k
from emo_core.errors import EMOInputError
from emo_core.pipeline.video import fit_audio_chunks, fit_audio_file_chunks
from tests.conftest import fixture_path


def write_wav(path, rate: int, seconds: float, channels: int = 2, nan: bool = False):
    t = np.arange(int(rate * seconds)) / rate
    tones = [np.sin(2 * np.pi * (220 + 110 * c) * t) * (0.5 ** c) for c in range(channels)]
    noise = np.random.default_rng(0).normal(0, 0.01, (t.size, channels))
    data = np.stack(tones, 1) * 0.6 + noise
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((data * 32767).astype(np.int16).tobytes())
    return path


@pytest.fixture(scope="module")
def long_stereo(tmp_path_factory):
    """70 s at 44.1 kHz stereo: 3.1 M samples, three of ``resample_in_blocks``' blocks."""
    return write_wav(tmp_path_factory.mktemp("audio") / "long.wav", 44100, 70.0)


@pytest.fixture(params=["speech_en_16k_mono.wav", "speech_en_44k_stereo.wav", "long"])
def audio_file(request, long_stereo):
    return long_stereo if request.param == "long" else fixture_path(request.param)


def test_speech_track_equals_the_in_memory_path(audio_file):
    waveform, rate = load_audio_file(audio_file)
    track = load_speech_track(audio_file)
    try:
        expected = to_mono_16k(waveform, rate)
        assert isinstance(track.samples, SpilledSamples)
        assert track.samples.shape == expected.shape
        assert torch.equal(track.samples[0:len(track.samples)], expected)
        assert (track.num_samples, track.sample_rate) == (waveform.shape[1], rate)
        assert track.peak == float(waveform.abs().max())
        # Ranges read back from disk are the same samples.
        assert torch.equal(track.samples[1000:1234], expected[1000:1234])
        assert track.samples[5:5].shape == (0,)
    finally:
        track.close()


def test_features_from_a_speech_track_equal_those_from_the_waveform(demo_weights):
    from emo_core.io.wav2vec import load_wav2vec

    wav2vec = load_wav2vec(demo_weights / "wav2vec2")
    path = fixture_path("speech_en_44k_stereo.wav")
    waveform, rate = load_audio_file(path)
    track = load_speech_track(path)
    eager = extract_audio_features(wav2vec, waveform, rate, 25.0, chunk_seconds=2.0)
    streamed = extract_audio_features(wav2vec, track, track.sample_rate, 25.0, chunk_seconds=2.0,
                                      stream=True)
    assert streamed.num_frames == eager.num_frames == 238  # round(9.52 s x 25)
    assert torch.equal(streamed.windows[:], eager.windows.contiguous())
    track.close()


@pytest.mark.parametrize("extra", [Fraction(-3), Fraction(0), Fraction(2)])
def test_soundtrack_decoded_at_close_equals_the_in_memory_one(audio_file, extra):
    waveform, rate = load_audio_file(audio_file)
    seconds = Fraction(waveform.shape[1], rate) + extra
    expected = np.concatenate(list(fit_audio_chunks(waveform, rate, seconds)))
    with open(audio_file, "rb") as handle:  # what the CLI passes: the open input file
        from_file = np.concatenate(list(fit_audio_file_chunks(handle, seconds)))
    assert from_file.shape == expected.shape
    assert np.array_equal(from_file, expected)


def test_nan_samples_become_silence_as_in_memory(tmp_path):
    # The wave module writes integer PCM only: a float32 WAV with NaNs, header by hand.
    data = np.sin(np.arange(16000) / 10.0).astype(np.float32)
    data[100:110] = np.nan
    path = tmp_path / "nan_float.wav"
    header = _float_wav_header(16000, 1, data.nbytes)
    path.write_bytes(header + data.tobytes())
    waveform, rate = load_audio_file(path)
    track = load_speech_track(path)
    assert torch.equal(track.samples[0:16000], to_mono_16k(waveform, rate))
    assert float(track.samples[100:110].abs().max()) == 0.0
    track.close()


def _float_wav_header(rate: int, channels: int, nbytes: int) -> bytes:
    fmt = (3).to_bytes(2, "little") + channels.to_bytes(2, "little") + rate.to_bytes(4, "little")
    fmt += (rate * 4 * channels).to_bytes(4, "little") + (4 * channels).to_bytes(2, "little")
    fmt += (32).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"data" + nbytes.to_bytes(4, "little")
    return b"RIFF" + (len(body) + nbytes).to_bytes(4, "little") + body


def test_bad_files_fail_as_the_in_memory_loader(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(EMOInputError, match="does not exist"):
        load_speech_track(missing)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"not audio at all" * 64)
    with pytest.raises(EMOInputError, match="could not be decoded"):
        load_speech_track(junk)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(_float_wav_header(16000, 1, 0))
    with pytest.raises(EMOInputError, match="empty"):
        load_speech_track(empty)
    loud = tmp_path / "loud.wav"
    data = np.full(1600, 100.0, np.float32)
    loud.write_bytes(_float_wav_header(16000, 1, data.nbytes) + data.tobytes())
    with pytest.raises(EMOInputError, match="far outside"):
        load_speech_track(loud)


def test_generate_never_loads_the_whole_input_for_a_streaming_family(
        demo_weights, tmp_path, monkeypatch):
    """The CLI path of an EMO checkpoint reads the file block by block (no ``load_audio_file``
    call), streams the features, and the mp4 still gets the exact frame count and a soundtrack
    of the video's length (decoded from the file at close)."""
    import av

    import emo_core.audio.waveform as waveform_module
    from emo_core.pipeline.run import GenerateRequest, generate_video
    from emo_core.pipeline.settings import GenerationSettings

    calls = []
    whole = waveform_module.load_audio_file
    monkeypatch.setattr(waveform_module, "load_audio_file",
                        lambda *a, **k: calls.append(a) or whole(*a, **k))
    audio = write_wav(tmp_path / "in.wav", 44100, 1.3)  # 32.5 frames at 25 fps -> 33
    request = GenerateRequest(
        checkpoint=demo_weights / "emo.safetensors", wav2vec=demo_weights / "wav2vec2",
        mediapipe=fixture_path("blaze_face_short_range.tflite").parent,
        image=fixture_path("portrait_astronaut.png"), audio=audio, out=tmp_path / "out.mp4",
        settings=GenerationSettings(size=64, steps=1))
    generate_video(request)
    assert calls == []
    with av.open(str(tmp_path / "out.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(tmp_path / "out.mp4")) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
        rate = container.streams.audio[0].rate
    assert frames == 33
    assert abs(samples / rate - 33 / 25) < 0.05  # AAC frames: the track ends within 1024 samples
