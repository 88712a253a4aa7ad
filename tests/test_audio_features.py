"""wav2vec per-frame features: frame counts, equality with the Hugging Face forward, chunking."""

from __future__ import annotations

import logging
import math
import wave
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from emo_core.audio.features import chunk_spans, extract_audio_features, frame_count
from emo_core.audio.normalize import NormalizedSignal
from emo_core.audio.wav2vec_parts import ConvFrontEnd, interpolate_frames
from emo_core.audio.waveform import load_audio_file, to_mono_16k
from emo_core.errors import EMOInputError
from emo_core.io.wav2vec import load_wav2vec
from tests.conftest import fixture_path

# Float32 end to end; the only differences from the reference path are normalisation statistics
# (float64 here, float32 numpy in Hugging Face) and interpolation weights (float64 vs float32
# positions): both ~1e-7 relative, amplified by 4 random layers to at most ~1e-5 on unit-scale
# features. 1e-4 absolute leaves margin and still fails for any real bug (offsets, wrong layer).
ATOL = 1e-4


def tiny_config(**overrides) -> Wav2Vec2Config:
    """Tiny 50 Hz wav2vec2 (standard conv kernels/strides): the models preset when present."""
    try:
        from emo_core.models.presets import wav2vec2_config

        config = wav2vec2_config("tiny")
    except ImportError:  # the models helper's preset is not there yet
        config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=1,
                                intermediate_size=64, conv_dim=(32,) * 7,
                                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                                vocab_size=32)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def saved_and_loaded(folder, **overrides) -> Wav2Vec2Model:
    torch.manual_seed(0)
    Wav2Vec2Model(tiny_config(**overrides)).save_pretrained(folder)
    return load_wav2vec(folder)  # the real loading path


@pytest.fixture(scope="module")
def wav2vec(tmp_path_factory):
    return saved_and_loaded(tmp_path_factory.mktemp("wav2vec2"))


def reference_features(model, waveform_16k: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Hallo's recipe through Hugging Face's own code: feature extractor normalisation,
    ``model(...)`` with the CNN output linearly interpolated to ``num_frames`` (align_corners)
    by a forward hook, ``hidden_states[1:]`` stacked.  Returns ``(F, L, C)``."""
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=False)
    values = extractor(waveform_16k.numpy(), sampling_rate=16000, return_tensors="pt").input_values
    hook = model.feature_extractor.register_forward_hook(
        lambda _m, _i, out: F.interpolate(out, size=num_frames, mode="linear", align_corners=True))
    try:
        with torch.no_grad():
            out = model(values, output_hidden_states=True)
    finally:
        hook.remove()
    return torch.stack(out.hidden_states[1:], dim=1)[0].transpose(0, 1).contiguous()


def expected_frames(num_samples: int, rate: int, fps: str) -> int:
    """Independent of Fraction: decimal arithmetic with 50 digits, halves rounded up."""
    with localcontext() as ctx:
        ctx.prec = 50
        value = Decimal(num_samples) / Decimal(rate) * Decimal(fps)
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def wav_length(name: str) -> tuple[int, int]:
    with wave.open(str(fixture_path(name))) as handle:
        return handle.getnframes(), handle.getframerate()


def test_frame_count_is_exact():
    for fps in ("12.5", "24", "25", "29.97", "30", "60"):
        for samples, rate in ((106915, 16000), (419850, 44100), (1, 8000), (3600 * 48000, 48000)):
            assert frame_count(samples, rate, float(fps)) == expected_frames(samples, rate, fps)
    assert frame_count(3600 * 44100, 44100, 29.97) == 107892  # one hour: no drift
    assert frame_count(16000, 16000, 12.5) == 13  # 12.5 frames: halves round up
    assert frame_count(16000, 16000, Fraction(30000, 1001)) == 30  # 29.97002997...
    for bad in (0, -25.0, float("nan"), "25"):
        with pytest.raises(EMOInputError, match="fps"):
            frame_count(16000, 16000, bad)


@pytest.mark.parametrize("name", ["speech_en_16k_mono.wav", "speech_en_44k_stereo.wav",
                                  "speech_arctic_a0007.wav"])
def test_fixture_frame_counts(wav2vec, name):
    samples, rate = wav_length(name)
    waveform, sample_rate = load_audio_file(fixture_path(name))
    rates = ["24", "25", "30"] + (["12.5", "29.97", "60"] if "arctic" in name else [])
    for fps in rates:
        features = extract_audio_features(wav2vec, waveform, sample_rate, float(fps))
        expected = expected_frames(samples, rate, fps)
        assert features.num_frames == expected
        assert tuple(features.windows.shape) == (expected, 5, 4, 32)
        assert features.windows.dtype == torch.float32 and features.windows.device.type == "cpu"
        assert torch.isfinite(features.windows).all()


def test_normalisation_matches_feature_extractor():
    waveform, _ = load_audio_file(fixture_path("speech_arctic_a0007.wav"))
    raw = waveform[0] * 0.3 + 0.01  # a DC offset and a gain the normalisation must remove
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True)
    expected = torch.from_numpy(extractor(raw.numpy(), sampling_rate=16000).input_values[0])
    ours = NormalizedSignal.from_waveform(raw).segment(0, raw.shape[0])
    # float64 statistics vs numpy's float32 ones: differences ~1e-6 on unit-variance samples.
    torch.testing.assert_close(ours, expected.float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("out_len", [7, 50, 113])
def test_interpolation_matches_torch_interpolate(out_len):
    features = torch.randn(50, 6)
    positions = torch.arange(out_len, dtype=torch.float64) * (49 / (out_len - 1))
    expected = F.interpolate(features.T[None], size=out_len, mode="linear", align_corners=True)
    # torch computes positions in float32: weights agree to ~1e-6.
    torch.testing.assert_close(interpolate_frames(features, positions), expected[0].T,
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("stable", [False, True])
def test_single_chunk_equals_hugging_face_forward(tmp_path, wav2vec, stable):
    """The whole recipe against HF's forward with ``output_hidden_states`` (both encoder kinds)."""
    model = wav2vec if not stable else saved_and_loaded(
        tmp_path, feat_extract_norm="layer", do_stable_layer_norm=True)
    waveform, rate = load_audio_file(fixture_path("speech_en_44k_stereo.wav"))
    features = extract_audio_features(model, waveform, rate, 25.0)
    expected = reference_features(model, to_mono_16k(waveform, rate), features.num_frames)
    torch.testing.assert_close(features.frame_features, expected, atol=ATOL, rtol=0)


def test_fitting_clip_is_the_one_shot_run(wav2vec):
    waveform, rate = load_audio_file(fixture_path("speech_en_16k_mono.wav"))  # 6.7 s
    one_shot = extract_audio_features(wav2vec, waveform, rate, 25.0, chunk_seconds=3600.0)
    exact_fit = extract_audio_features(wav2vec, waveform, rate, 25.0,
                                       chunk_seconds=one_shot.num_frames / 25.0)
    assert len(chunk_spans(one_shot.num_frames, one_shot.num_frames, 50)) == 1
    assert torch.equal(one_shot.windows, exact_fit.windows)  # same code path: bit-identical


def test_chunked_cnn_uses_whole_utterance_statistics(wav2vec):
    waveform, rate = load_audio_file(fixture_path("speech_en_16k_mono.wav"))
    signal = NormalizedSignal.from_waveform(to_mono_16k(waveform, rate))
    with torch.no_grad():
        whole = wav2vec.feature_extractor(signal.segment(0, signal.length)[None])[0].T
        chunked = ConvFrontEnd(wav2vec, signal, "cpu", torch.float32, global_norm=True,
                               block_samples=7000)  # statistics from ~16 blocks
        for lo, hi in ((0, 40), (100, 180), (whole.shape[0] - 30, whole.shape[0] - 1)):
            torch.testing.assert_close(chunked.frames(lo, hi), whole[lo:hi + 1], atol=1e-5, rtol=0)


def test_multi_chunk_stitching(wav2vec):
    waveform, rate = load_audio_file(fixture_path("speech_arctic_a0007.wav"))  # 4.0 s
    one_shot = extract_audio_features(wav2vec, waveform, rate, 25.0)
    # Context covering the whole clip: every chunk's transformer sees all frames, so stitching
    # must reproduce the one-shot result (tests the offsets, CNN statistics and interpolation).
    full_context = extract_audio_features(wav2vec, waveform, rate, 25.0, chunk_seconds=1.0,
                                          context_seconds=10.0)
    torch.testing.assert_close(full_context.windows, one_shot.windows, atol=ATOL, rtol=0)
    # Realistic context: the attention span is cut, so results differ near chunk edges.
    chunked = extract_audio_features(wav2vec, waveform, rate, 25.0, chunk_seconds=1.0,
                                     context_seconds=0.5)
    diff = (chunked.frame_features - one_shot.frame_features).abs()
    scale = float(one_shot.frame_features.std())
    print(f"\n4 chunks of 1 s, 0.5 s context, tiny random wav2vec: "
          f"max |diff| {float(diff.max()):.4f}, "
          f"mean {float(diff.mean()):.5f}, feature std {scale:.3f}")
    assert chunked.windows.shape == one_shot.windows.shape
    assert float(diff.mean()) < 0.1 * scale  # sanity: a misplaced chunk gives ~1.4 x std


def test_windows_clamp_at_the_edges(wav2vec):
    features = extract_audio_features(wav2vec, torch.randn(16000), 16000, 10.0, window=2)
    frames = features.frame_features  # (10, L, C)
    for i in range(features.num_frames):
        for k in range(5):
            j = min(max(i + k - 2, 0), features.num_frames - 1)
            assert torch.equal(features.windows[i, k], frames[j])
    no_window = extract_audio_features(wav2vec, torch.randn(16000), 16000, 10.0, window=0)
    assert no_window.windows.shape == (10, 1, 4, 32)


def test_silence_and_short_clips(wav2vec):
    silence = extract_audio_features(wav2vec, torch.zeros(1, 32000), 16000, 25.0)
    assert silence.num_frames == 50 and torch.isfinite(silence.windows).all()
    one_frame = extract_audio_features(wav2vec, torch.randn(320), 16000, 25.0)  # 0.5 frame -> 1
    assert one_frame.num_frames == 1 and torch.isfinite(one_frame.windows).all()
    short_60 = extract_audio_features(wav2vec, torch.randn(300), 16000, 60.0)  # < CNN's 400
    assert short_60.num_frames == 1
    with pytest.raises(EMOInputError, match="shorter than one video frame at 25 fps"):
        extract_audio_features(wav2vec, torch.randn(100), 16000, 25.0)


def test_bad_inputs(wav2vec, caplog):
    with pytest.raises(EMOInputError, match="audio is empty"):
        extract_audio_features(wav2vec, torch.zeros(1, 0), 16000, 25.0)
    with pytest.raises(EMOInputError, match="IMAGE"):
        extract_audio_features(wav2vec, torch.rand(1, 512, 512, 3), 16000, 25.0)
    noisy = torch.randn(16000)
    noisy[100:200] = float("nan")
    with caplog.at_level(logging.WARNING):
        features = extract_audio_features(wav2vec, noisy, 16000, 25.0)
    assert torch.isfinite(features.windows).all() and "100 NaN" in caplog.text
    with pytest.raises(ValueError, match="window"):
        extract_audio_features(wav2vec, noisy, 16000, 25.0, window=-1)


def test_odd_rates_and_comfy_layout(wav2vec):
    for rate in (8000, 11025, 22050, 44100):
        audio = torch.randn(1, 2, int(rate * 1.3))  # ComfyUI AUDIO waveform (B, C, T)
        features = extract_audio_features(wav2vec, audio, rate, 30.0)
        assert features.num_frames == expected_frames(audio.shape[-1], rate, "30")
        assert features.waveform_16k.shape == (math.ceil(audio.shape[-1] * 16000 / rate),)


def test_dtype_and_mode_are_restored(wav2vec):
    audio = torch.randn(24000)
    base = extract_audio_features(wav2vec, audio, 16000, 25.0)
    wav2vec.train()
    try:
        doubled = extract_audio_features(wav2vec, audio, 16000, 25.0, dtype=torch.float64)
        assert wav2vec.training  # restored
    finally:
        wav2vec.eval()
    assert next(wav2vec.parameters()).dtype == torch.float32
    assert doubled.windows.dtype == torch.float32
    torch.testing.assert_close(doubled.windows, base.windows, atol=ATOL, rtol=0)


def test_work_per_call_is_bounded_by_the_chunk(wav2vec):
    """Deterministic memory check: the largest tensors the CNN and the transformer receive do
    not depend on the audio's duration once it is longer than a chunk."""
    largest = {}

    def record(name):
        def hook(_module, inputs):
            largest[name] = max(largest.get(name, 0), inputs[0].shape[-1 if name == "cnn" else 1])
        return hook

    hooks = [wav2vec.feature_extractor.conv_layers[0].conv.register_forward_pre_hook(record("cnn")),
             wav2vec.encoder.register_forward_pre_hook(record("encoder"))]
    seen = {}
    try:
        for seconds in (8, 24):
            largest.clear()
            extract_audio_features(wav2vec, torch.randn(seconds * 16000) * 0.1, 16000, 25.0,
                                   chunk_seconds=3.0, context_seconds=0.5)
            seen[seconds] = dict(largest)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen[8] == seen[24], seen
    assert seen[24]["encoder"] == 75 + 2 * 13  # 3 s chunk + 2 x 0.5 s context at 25 fps
    assert seen[24]["cnn"] <= math.ceil(101 / 25 * 16000) + 400  # samples of one chunk span
