"""Hallo2's 60 s audio pieces: pydub's millisecond cut, per-piece frame counts, Hallo2's padding
rule for the last piece (both of its quirks), and the extension to whole clips that keeps every
window Hallo2 computes. Expected values are worked out by hand from Hallo2's rules
(``emo_core/audio/hallo2_features.py`` docstring), not from the code under test. No golden set
is longer than 60 s (Hallo2's code cannot run here), so 130 s of real speech is checked against
an independent piece-by-piece computation (Hallo2's ``cut_audio``: pydub pieces of 60 000 ms,
each run through wav2vec2 alone)."""

from __future__ import annotations

import pytest
import torch

from emo_core.audio.hallo2_features import extend_to_clips, hallo2_segments, pydub_bounds
from emo_core.audio.hallo_features import hallo_audio_windows
from tests.hallo2_fixture import hallo2_fixture

MINUTE = 60 * 16000  # samples in one 60 s piece at 16 kHz
HALLO2_WAV2VEC = hallo2_fixture() / "pretrained_models/wav2vec/wav2vec2-base-960h"


@pytest.mark.parametrize("samples, bounds", [
    (32000, [(0, 32000)]),  # 2 s: one piece
    (32001, [(0, 32000)]),  # 2000.06 ms -> 2000 ms: pydub drops the sample
    (32008, [(0, 32016)]),  # 2000.5 ms is 2000.5000000000002 in pydub's float: 2001
    (16008, [(0, 16000)]),  # 1000.5 ms exactly: Python rounds half to even, 1000
    (32009, [(0, 32016)]),  # 2000.56 ms -> 2001 ms: pydub pads 7 samples of silence
    (MINUTE, [(0, MINUTE)]),  # exactly 60 s: still one piece
    (MINUTE + 8, [(0, MINUTE)]),  # 60000.5 ms exactly -> 60000: one piece
    (MINUTE + 9, [(0, MINUTE), (MINUTE, MINUTE + 16)]),  # a 1 ms second piece
    (2 * MINUTE + 16000, [(0, MINUTE), (MINUTE, 2 * MINUTE), (2 * MINUTE, 2 * MINUTE + 16000)]),
])
def test_pydub_cut_in_whole_milliseconds(samples, bounds):
    assert pydub_bounds(samples) == bounds


def _pieces(samples: int):
    return [(s.start, s.values.numel(), s.frames, s.padding)
            for s in hallo2_segments(torch.randn(samples), fps=25, clip_frames=16)]


@pytest.mark.parametrize("samples, pieces", [
    # 2 s: 50 frames -> padded to 64 (Hallo's rule when there is one piece)
    (32000, [(0, 32000, 50, 14)]),
    # 61 s: 1500 + 25 frames; the last pads 16 - 1525 % 16 = 11 (the TOTAL decides the amount)
    (MINUTE + 16000, [(0, MINUTE, 1500, 0), (MINUTE, 16000, 25, 11)]),
    # quirk 1: the last piece is 16 frames (a whole clip), the total 1516 is not: no padding
    (MINUTE + 10240, [(0, MINUTE, 1500, 0), (MINUTE, 10240, 16, 0)]),
    # quirk 2: the total 1504 is whole clips, the last piece (4 frames) is not: a whole clip
    (MINUTE + 2560, [(0, MINUTE, 1500, 0), (MINUTE, 2560, 4, 16)]),
    # a piece of 1 ms: 1 frame (ceil), padded to the total's next clip
    (MINUTE + 16, [(0, MINUTE, 1500, 0), (MINUTE, 16, 1, 3)]),
])
def test_piece_frames_and_hallo2_padding_rule(samples, pieces):
    assert _pieces(samples) == pieces


def test_each_piece_is_normalised_on_its_own():
    wave = torch.cat([torch.randn(MINUTE) * 0.01, torch.randn(16000) * 0.5 + 0.2])
    first, second = hallo2_segments(wave)
    for segment in (first, second):
        assert abs(float(segment.values.mean())) < 1e-4
        assert abs(float(segment.values.std(unbiased=False)) - 1) < 1e-3


def test_silence_padding_of_the_rounded_millisecond():
    wave = torch.ones(32009)
    (segment,) = hallo2_segments(wave)
    assert segment.values.numel() == 32016  # 7 zero samples appended before normalising
    ones, zeros = segment.values[:32009], segment.values[32009:]
    assert (zeros == zeros[0]).all() and (ones == ones[0]).all()
    assert float(zeros[0]) < 0 < float(ones[0])  # the silence sits below the signal's mean


def test_extension_to_whole_clips_keeps_every_window_hallo2_computes():
    """Quirk 1 leaves 1516 rows: Hallo2 makes 94 clips and drops 12 frames; extended by the
    last row, the windows of all 1516 rows are Hallo2's (its windows clamp at the last row)
    and the last clip gets windows too."""
    features = torch.randn(1516, 2, 3)
    extended = extend_to_clips(features, 1516, 16)
    assert extended.shape == (1520, 2, 3) and torch.equal(extended[:1516], features)
    assert torch.equal(hallo_audio_windows(extended)[:1516], hallo_audio_windows(features))
    whole = torch.randn(64, 2, 3)
    assert extend_to_clips(whole, 50, 16) is whole  # already whole clips: untouched


def test_bad_waveforms_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        list(hallo2_segments(torch.zeros(0)))
    with pytest.raises(ValueError, match="non-empty"):
        list(hallo2_segments(torch.zeros(2, 100)))
    with pytest.raises(ValueError, match="shorter than 1 ms"):
        list(hallo2_segments(torch.zeros(7)))


@pytest.mark.parametrize("rows", [1, 2, 5, 64])
def test_windows_are_a_view_costing_the_features_once(rows):
    """Frames i-2..i+2 clamped, as Hallo's ``process_audio_emb`` stacks them, without the 5x
    copy: an hour of audio at SD1.5 size would otherwise hold 17 GB of windows."""
    features = torch.randn(rows, 3, 4)
    index = (torch.arange(rows)[:, None] + torch.arange(-2, 3)[None]).clamp(0, rows - 1)
    windows = hallo_audio_windows(features)
    assert torch.equal(windows, features[index])
    assert windows.untyped_storage().nbytes() == (rows + 4) * 3 * 4 * 4  # + 2 edge rows a side


# --------------------------------------------------------------------------- > 60 s, real speech

LONG_SECONDS = 130  # three pydub pieces: 60 s, 60 s and 10 s


@pytest.fixture(scope="module")
def long_speech():
    """130 s (+ 9 samples) of real speech: the 6.7 s fixture clip looped, int16 / 32768 as
    Hallo2's reader returns it. 130000.5625 ms rounds to 130001: pydub pads 7 samples."""
    import wave

    import numpy as np

    from tests.fixture_sets import fixture_path

    with wave.open(str(fixture_path("speech_en_16k_mono.wav")), "rb") as source:
        assert (source.getframerate(), source.getnchannels(), source.getsampwidth()) == (16000, 1, 2)
        clip = np.frombuffer(source.readframes(source.getnframes()), np.int16)
    samples = LONG_SECONDS * 16000 + 9
    looped = np.resize(clip, samples)  # repeats the clip: speech across every 60 s boundary
    return torch.from_numpy(looped.astype(np.float32) / 32768)


def _independent_pieces(wave: torch.Tensor, clip: int, fps: int = 25):
    """Hallo2's cut, written out here from its rules (not from ``hallo2_features``): pydub's
    length in whole ms, pieces of 60 000 ms (the last ends at that length, silence-padded),
    each normalised by transformers' own Wav2Vec2FeatureExtractor (Hallo's call), its own
    ``ceil(samples / 16000 * fps)`` frames; only the last piece padded, to the TOTAL's next
    clip. Yields ``(normalised padded values, rows, frames)``."""
    from transformers import Wav2Vec2FeatureExtractor

    extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(HALLO2_WAV2VEC))
    length_ms = round(1000 * (wave.numel() / 16000))
    starts = list(range(0, length_ms, 60_000))
    done = 0
    for index, start_ms in enumerate(starts):
        end_ms = min(start_ms + 60_000, length_ms)
        piece = wave[start_ms * 16:end_ms * 16]
        piece = torch.cat([piece, torch.zeros((end_ms - start_ms) * 16 - piece.numel())])
        values = torch.from_numpy(extractor(piece.numpy(), sampling_rate=16000).input_values[0])
        frames = -(-piece.numel() * fps // 16000)
        pad = 0
        if index == len(starts) - 1 and frames % clip:
            pad = clip - (done + frames) % clip
        yield torch.cat([values.float(), torch.zeros(pad * 16000 // fps)]), frames + pad, frames
        done += frames


def test_audio_longer_than_60_s_equals_each_piece_run_alone(long_speech):
    """Features of a 130 s input = the concatenation of three wav2vec2 runs, each on one
    piece alone, rows at the 60 s and 120 s boundaries included (tolerance 1e-4: Hallo's for
    the audio front-end). The tiny wav2vec2 of the Hallo2 fixture set; a one-pass front-end
    (Hallo's) differs at the boundaries, so the comparison can fail."""
    from emo_core.audio.hallo2_features import hallo2_audio_features
    from emo_core.audio.hallo_features import (
        hallo_audio_features,
        hallo_audio_windows,
        wav2vec_frame_features,
    )
    from emo_core.io.wav2vec import load_wav2vec

    if not (HALLO2_WAV2VEC / "config.json").is_file():
        pytest.skip(f"Hallo2 fixture wav2vec2 {HALLO2_WAV2VEC} is absent")
    wav2vec = load_wav2vec(HALLO2_WAV2VEC)
    clip = 16
    pieces = list(_independent_pieces(long_speech, clip))
    assert len(pieces) == 3 and [p[2] for p in pieces] == [1500, 1500, 251]  # 10.001 s: 251
    expected = torch.cat([wav2vec_frame_features(wav2vec, values, rows)
                          for values, rows, _ in pieces])
    features, frames = hallo2_audio_features(wav2vec, long_speech, fps=25, clip_frames=clip)
    assert frames == sum(p[2] for p in pieces) == 3251
    assert features.shape == expected.shape and features.shape[0] % clip == 0
    assert float((features - expected).abs().max()) < 1e-4
    boundaries = [1500, 3000]
    for row in boundaries:  # the rows either side of each cut, and the windows across it
        near = slice(row - 3, row + 3)
        assert float((features[near] - expected[near]).abs().max()) < 1e-4, row
        windows, golden = hallo_audio_windows(features), hallo_audio_windows(expected)
        assert float((windows[near] - golden[near]).abs().max()) < 1e-4, row
    one_pass, _ = hallo_audio_features(wav2vec, long_speech, fps=25, clip_frames=clip)
    assert max(float((one_pass[r - 1:r + 1] - expected[r - 1:r + 1]).abs().max())
               for r in boundaries) > 1e-2
