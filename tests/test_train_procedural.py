"""The procedural talking heads the proof of learning trains on: their measurements must read
back what the renderer was told, or the proof's figures would mean nothing."""

from __future__ import annotations

import numpy as np
import pytest

from emo_core.training.procedural.clips import MAX_ANGLE, angle_speeds, head_angles, make_clip
from emo_core.training.procedural.faces import (
    measure_angle,
    measure_colours,
    measure_mouth,
    random_identity,
    render_face,
)
from emo_core.training.procedural.speech import frame_envelope, synthetic_speech


def test_mouth_measurement_follows_the_opening_at_any_roll():
    rng = np.random.default_rng(0)
    openings = np.linspace(0, 1, 11)
    angles = np.linspace(-MAX_ANGLE, MAX_ANGLE, 11)
    for _ in range(3):
        identity = random_identity(rng)
        frames = np.stack([render_face(identity, o, a) for o, a in zip(openings, angles,
                                                                        strict=True)])
        # Measured 0.997-0.998 on these identities; anti-aliasing steps keep it below 1.
        assert np.corrcoef(measure_mouth(frames), openings)[0, 1] > 0.99


def test_angle_measurement_reads_the_roll():
    rng = np.random.default_rng(1)
    angles = np.linspace(-MAX_ANGLE, MAX_ANGLE, 13)
    for _ in range(3):
        identity = random_identity(rng)
        measured = measure_angle(np.stack([render_face(identity, 0.5, a) for a in angles]))
        # Measured slope 0.99-1.01 and max error < 0.5 degrees (64-px shapes).
        slope = np.polyfit(angles, measured, 1)[0]
        assert slope == pytest.approx(1.0, abs=0.05)
        assert np.abs(measured - angles).max() < 1.0


def test_head_moves_at_the_requested_speed_within_the_range():
    angles = head_angles(np.random.default_rng(2), 200, 3.0)
    assert np.abs(angles).max() <= MAX_ANGLE + 1e-9
    speeds = angle_speeds(angles)
    # Bounces at +-MAX_ANGLE shorten a few steps; every other step is exactly 3 degrees.
    assert np.median(speeds) == pytest.approx(3.0)
    assert (np.abs(speeds - 3.0) < 1e-9).mean() > 0.8


def test_speech_envelope_drives_the_mouth_of_a_clip():
    waveform, envelope = synthetic_speech(np.random.default_rng(3), 2.0)
    assert waveform.dtype == np.float32 and waveform.shape == (32000,)
    per_frame = frame_envelope(envelope, 50, 25.0)
    # Loudness of the waveform per frame tracks the envelope it was built from.
    rms = np.sqrt((waveform[:32000].reshape(50, 640).astype(np.float64) ** 2).mean(axis=1))
    assert np.corrcoef(rms, per_frame)[0, 1] > 0.9
    clip = make_clip(5, 6, 40, 2.0)
    assert clip.frames.shape == (40, 64, 64, 3)
    assert np.corrcoef(measure_mouth(clip.frames), clip.opening)[0, 1] > 0.98


def test_identities_differ_and_colours_are_measured_back():
    a, b = (make_clip(seed, 0, 1, 0.0).frames for seed in (100000, 100001))
    colours_a, colours_b = measure_colours(a)[0], measure_colours(b)[0]
    identity = random_identity(np.random.default_rng(100000))
    # The crown region is hair only: its mean colour is the hair colour (anti-aliasing aside).
    assert np.abs(colours_a[3:] - np.array(identity.hair)).max() < 3.0
    assert np.abs(colours_a - colours_b).mean() > 10.0
