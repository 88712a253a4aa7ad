"""Whisper front-end equals EchoMimic's (openai-whisper + Audio2Feature) on the golden fixture.

Tolerances (fp32, one thread; the issue's figures): log-mel and every encoder layer 1e-4
(float reduction order in STFT / matmuls only), per-frame chunks 1e-5 (a gather of those rows).
"""

from __future__ import annotations

import pytest
import torch

from tests.echomimic_fixture import (
    load_goldens,
    max_error,
    pretrained_weights,
    skip_without_fixture,
)

pytestmark = skip_without_fixture

WHISPER = "audio_processor/whisper_tiny.pt"


@pytest.fixture(scope="module")
def goldens(one_torch_thread):
    return load_goldens()


@pytest.fixture(scope="module")
def encoder(one_torch_thread):
    from emo_core.io.whisper import load_encoder, read_openai_whisper

    config, tensors, _ = read_openai_whisper(pretrained_weights() / WHISPER)
    return load_encoder(config, tensors)


def test_log_mel_equals_whisper(goldens):
    from emo_core.audio.whisper_mel import log_mel_spectrogram

    inputs, outputs = goldens
    mel = log_mel_spectrogram(inputs["audio_waveform_16k"])
    assert max_error(mel, outputs["audio_log_mel"]) < 1e-4


def test_every_encoder_layer_equals_echomimic(goldens, encoder):
    from emo_core.audio.whisper_features import encode_rows

    inputs, outputs = goldens
    rows = encode_rows(encoder, inputs["audio_waveform_16k"])
    golden = outputs["whisper_feature"]
    assert rows.shape == golden.shape == (100, 3, 384)
    for layer in range(golden.shape[1]):
        assert max_error(rows[:, layer], golden[:, layer]) < 1e-4, layer


def test_chunk_rows_follow_echomimic_rule(goldens):
    from emo_core.audio.whisper_features import chunk_indices

    _, outputs = goldens
    golden = outputs["audio_chunk_indices"]
    assert torch.equal(chunk_indices(range(golden.shape[0]), 24, 100), golden)


def test_chunks_equal_echomimic(goldens, encoder):
    from emo_core.audio.whisper_features import extract_whisper_features

    inputs, outputs = goldens
    features = extract_whisper_features(encoder, inputs["audio_waveform_16k"], 16000, 24)
    assert features.num_frames == 48  # 2.0 s at 24 fps, exactly
    golden = outputs["audio_chunks"]
    chunks = features.chunks(range(golden.shape[0]))
    assert max_error(chunks, golden) < 1e-5
    assert features.tokens_per_frame == golden.shape[1] == 30


@pytest.mark.parametrize(("fps", "samples", "frames"), [
    (25, 32000, 50), (24, 32000, 48), (29.97, 32000, 60), (12.5, 16080, 13), (60, 16000, 60)])
def test_any_fps_exact_frame_count(encoder, fps, samples, frames):
    from emo_core.audio.whisper_features import extract_whisper_features

    wave = torch.sin(torch.arange(samples) * 0.05) * 0.3
    features = extract_whisper_features(encoder, wave, 16000, fps)
    assert features.num_frames == frames
    last = features.chunks([frames - 1])
    assert last.shape == (1, 30, 384) and torch.isfinite(last).all()


def test_long_audio_in_30s_segments(encoder):
    """Audio over 30 s: segments of 3000 mel columns, each truncated to its own half."""
    from emo_core.audio.whisper_features import encode_rows

    wave = torch.randn(16000 * 31, generator=torch.Generator().manual_seed(0)) * 0.1
    rows = encode_rows(encoder, wave)
    assert rows.shape[0] == 1500 + 50  # 3000 columns -> 1500 rows, then 100 -> 50


def test_pack_format_round_trip(tmp_path, goldens):
    """The converted encoder, written as safetensors and read back, gives the same rows."""
    from safetensors.torch import load_file, save_file

    from emo_core.audio.whisper_features import encode_rows
    from emo_core.io.whisper import load_encoder, read_openai_whisper

    config, tensors, dropped = read_openai_whisper(pretrained_weights() / WHISPER)
    assert dropped and all(k.startswith(("decoder.", "encoder.ln_post.")) for k in dropped)
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp_path / "w.safetensors")
    again = load_encoder(config, load_file(tmp_path / "w.safetensors"))
    wave = goldens[0]["audio_waveform_16k"][:8000]
    assert torch.equal(encode_rows(again, wave), encode_rows(load_encoder(config, tensors), wave))


def test_refuses_foreign_and_incomplete_whisper(tmp_path):
    from emo_core.errors import CheckpointError
    from emo_core.io.whisper import read_openai_whisper

    raw = torch.load(pretrained_weights() / WHISPER, weights_only=True)
    cut = dict(raw, model_state_dict={k: v for k, v in raw["model_state_dict"].items()
                                      if "blocks.1.mlp.0" not in k})
    torch.save(cut, tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="missing"):
        read_openai_whisper(tmp_path / "cut.pt")
    torch.save(raw["model_state_dict"], tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="not an openai-whisper checkpoint"):
        read_openai_whisper(tmp_path / "bare.pt")
