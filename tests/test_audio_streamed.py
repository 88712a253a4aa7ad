"""Audio features streamed per clip window (issue 22): the same numbers as the eager tensor, and
memory that does not grow with the input.

``extract_audio_features(stream=True)`` returns ``windows`` as a ``StreamedWindows``: the chunks
of the global grid are computed when a clip reads its windows. Checked here with the tiny demo
wav2vec2 (the property does not depend on the model's size; ``bench_pipeline_memory.py
--wav2vec-full`` measures it with wav2vec2-base):

- every clip window of the real clip layout equals the eager tensor's rows bit for bit (one torch
  thread: same kernels, same inputs), for 16 kHz mono and 44.1 kHz stereo input and 29.97 fps;
- reading the clips in order computes every chunk exactly once and never holds more than two
  (counters), and the bytes held stay the same for a 4x longer input;
- a whole EMO run (``EMOPipeline.generate_latents``) gives bit-equal latents from streamed and
  eager features; the EMO family streams, Hallo's does not (its front-end is eager).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from emo_core.audio.features import chunk_spans, extract_audio_features
from emo_core.audio.streamed import StreamedWindows
from emo_core.audio.waveform import load_audio_file
from emo_core.pipeline.clips import clip_spans
from tests.conftest import fixture_path


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """One torch thread: bit-equality needs the same kernels for both paths."""


@pytest.fixture(scope="module")
def wav2vec(demo_weights):
    from emo_core.io.wav2vec import load_wav2vec

    return load_wav2vec(demo_weights / "wav2vec2")


def speechlike(seconds: float, rate: int = 16000, channels: int = 1) -> torch.Tensor:
    """Deterministic ``(C, T)``: a gliding tone with a syllable envelope plus noise."""
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    tone = (0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t).clamp(min=0)) * torch.sin(
        2 * math.pi * (140 * t + 20 * torch.sin(2 * math.pi * 0.3 * t)))
    noise = 0.02 * torch.randn(channels, t.shape[0], generator=torch.Generator().manual_seed(0),
                               dtype=torch.float64)
    return (0.3 * tone + noise).float()


def clip_frames(num_frames: int, frames_per_clip: int = 12):
    return [span.frame_indices(num_frames) for span in clip_spans(num_frames, frames_per_clip)]


@pytest.mark.parametrize("source, fps", [
    ("speech_arctic_a0007.wav", 25.0),     # 16 kHz mono, one chunk at the default chunk size
    ("speech_en_44k_stereo.wav", 29.97),   # resampled stereo, non-integer fps
])
@pytest.mark.parametrize("chunk_seconds", [1.0, 20.0])
def test_every_clip_window_equals_the_eager_rows(wav2vec, source, fps, chunk_seconds):
    waveform, rate = load_audio_file(fixture_path(source))
    options = dict(chunk_seconds=chunk_seconds, context_seconds=0.4)
    eager = extract_audio_features(wav2vec, waveform, rate, fps, **options)
    streamed = extract_audio_features(wav2vec, waveform, rate, fps, stream=True, **options)
    windows = streamed.windows
    assert isinstance(windows, StreamedWindows)
    assert windows.shape == eager.windows.shape and streamed.num_frames == eager.num_frames
    assert windows.chunks.computed == 0  # nothing computed before a clip asks
    for frames in clip_frames(eager.num_frames):
        assert torch.equal(windows[frames], eager.windows[frames])
    spans = chunk_spans(eager.num_frames, math.ceil(chunk_seconds * fps), math.ceil(0.4 * fps))
    assert windows.chunks.computed == len(spans)  # forward clips: every chunk once
    assert windows.peak_held <= 2
    # Other index forms the callers use, and the whole tensor.
    assert torch.equal(windows[3], eager.windows[3])
    assert torch.equal(windows[-1], eager.windows[-1])
    assert torch.equal(windows[2:9], eager.windows[2:9])
    assert torch.equal(streamed.frame_features, eager.frame_features)
    assert torch.equal(windows.contiguous(), eager.windows.contiguous())


def _held_bytes_reading_clips(wav2vec, seconds: float):
    """Read every clip's windows in order; ``(chunks computed, chunk count, peak bytes held,
    peak chunks held)``."""
    waveform = speechlike(seconds)
    features = extract_audio_features(wav2vec, waveform, 16000, 25.0, chunk_seconds=2.0,
                                      context_seconds=0.4, stream=True)
    windows = features.windows
    peak = 0
    for frames in clip_frames(features.num_frames):
        windows[frames]
        peak = max(peak, windows.held_bytes)
    return windows.chunks.computed, len(windows.chunks.spans), peak, windows.peak_held


def test_memory_held_does_not_grow_with_the_input(wav2vec):
    short = _held_bytes_reading_clips(wav2vec, 15.0)
    long = _held_bytes_reading_clips(wav2vec, 60.0)
    assert (short[1], long[1]) == (8, 30)  # 375 and 1500 frames in chunks of 50
    for computed, chunks, _, held in (short, long):
        assert computed == chunks  # each chunk computed once
        assert held == 2  # a clip straddling a chunk edge holds two, never more
    config = wav2vec.config
    chunk_bytes = 50 * config.num_hidden_layers * config.hidden_size * 4  # 2 s at 25 fps
    assert short[2] == long[2] == 2 * chunk_bytes  # the same bytes, whatever the length
    # The eager path holds every frame: 60 s is (1500 + 4) rows.
    eager_bytes = (60 * 25 + 4) * config.num_hidden_layers * config.hidden_size * 4
    assert long[2] * 10 < eager_bytes


def test_bad_indices_are_refused(wav2vec):
    features = extract_audio_features(wav2vec, speechlike(1.0), 16000, 25.0, stream=True)
    windows = features.windows
    with pytest.raises(IndexError, match="out of range"):
        windows[torch.tensor([0, 25])]
    with pytest.raises(IndexError, match="out of range"):
        windows[25]
    with pytest.raises(IndexError, match="1-D integer"):
        windows[torch.tensor([0.0, 1.0])]
    with pytest.raises(IndexError, match="1-D integer"):
        windows[torch.ones(25, dtype=torch.bool)]
    assert windows.chunks.computed == 0


def test_emo_run_from_streamed_features_equals_the_eager_run(demo_weights, wav2vec):
    from emo_core.families import family_of
    from emo_core.io.emo_checkpoint import load_emo_checkpoint
    from emo_core.pipeline.pipeline import EMOPipeline
    from emo_core.pipeline.reference import encode_reference
    from emo_core.pipeline.settings import GenerationSettings

    models = load_emo_checkpoint(demo_weights / "emo.safetensors")
    family = family_of(models)
    waveform = speechlike(2.2, rate=44100, channels=2)
    eager = family.audio_features(wav2vec, waveform, 44100, 25.0)
    streamed = family.streamed_audio_features(wav2vec, waveform, 44100, 25.0)
    assert isinstance(streamed.windows, StreamedWindows)
    image = np.asarray(Image.open(fixture_path("portrait_astronaut.png")).convert("RGB")
                       .resize((64, 64)))
    reference = encode_reference(models, image)
    mask = torch.zeros(64, 64)
    mask[8:40, 16:48] = 1
    speed = torch.full((eager.num_frames,), 2.0)
    settings = GenerationSettings(size=64, steps=1, frames_per_clip=12, seed=3)
    pipeline = EMOPipeline(models, family=family)
    runs = [torch.cat(list(pipeline.generate_latents(reference, audio, mask, speed, settings)))
            for audio in (eager, streamed)]
    assert runs[0].shape[0] == eager.num_frames == 55
    assert torch.equal(runs[0], runs[1])


def test_families_whose_front_end_is_eager_return_eager_features():
    from emo_core.families.base import ModelFamily
    from emo_core.families.emo import EMOFamily
    from emo_core.families.hallo import HalloFamily

    assert "streamed_audio_features" in vars(EMOFamily)
    # Hallo's front-end (whole-clip padding, all layers) is not streamed yet: the default hook
    # returns its own audio_features unchanged.
    assert HalloFamily.streamed_audio_features is ModelFamily.streamed_audio_features
