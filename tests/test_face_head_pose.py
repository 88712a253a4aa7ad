"""emo_core.face.head_pose: rotation maths, and speeds measured on synthetic driving videos."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from emo_core.errors import EMOInputError, NoFaceError
from emo_core.face.head_pose import (
    fill_missing_rotations,
    head_rotation_speeds,
    head_rotations,
    median_smooth,
    nearest_rotation,
    rotation_angle,
    rotation_speeds,
    slerp_rotation,
)

FACE_CENTER = (177 + 47.5, 82 + 47.5)  # the portrait's face centre (x, y)
# Landmarker rotation estimates jitter by a fraction of a degree per frame: over 132 synthetic
# frame pairs the error was RMS 0.41, max 1.17 deg/frame (see head_pose's docstring); 1.5 deg/frame
# is the bound the design asks for.
SPEED_TOLERANCE = 1.5


def rot_z(degrees):
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def rot_y(degrees):
    a = np.radians(degrees)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1.0, 0], [-np.sin(a), 0, np.cos(a)]])


@pytest.fixture
def portrait(fixtures):
    return Image.open(fixtures("portrait_astronaut.png")).convert("RGB")


def test_rotation_speeds_of_known_rotations():
    base = rot_y(20)  # a turned head rolling further: speed is independent of the start pose
    angles = np.cumsum([0, 3, 1, 0, 7.5])
    speeds = rotation_speeds([rot_z(a) @ base for a in angles])
    np.testing.assert_allclose(speeds, [3, 3, 1, 0, 7.5], atol=1e-4)  # float32 output
    assert rotation_speeds([np.eye(3)]).tolist() == [0.0]
    with pytest.raises(ValueError, match=r"\(F, 3, 3\)"):
        rotation_speeds(np.zeros((2, 4, 4)))


def test_nearest_rotation_slerp_and_gap_filling():
    scaled = 1.7 * rot_y(30)
    np.testing.assert_allclose(nearest_rotation(scaled), rot_y(30), atol=1e-12)
    middle = slerp_rotation(rot_z(10), rot_z(50), 0.25)
    np.testing.assert_allclose(middle, rot_z(20), atol=1e-12)
    filled = fill_missing_rotations([None, rot_y(10), None, None, rot_y(40), None])
    np.testing.assert_allclose([rotation_angle(r) for r in filled], [10, 10, 20, 30, 40, 40],
                               atol=1e-9)
    assert rotation_angle(rot_z(179.0)) == pytest.approx(179.0)


def test_median_smoothing_removes_single_frame_spikes():
    values = np.array([1, 1, 9, 1, 1, 4, 4, 4], np.float32)
    np.testing.assert_array_equal(median_smooth(values, 1), [1, 1, 1, 1, 1, 4, 4, 4])
    np.testing.assert_array_equal(median_smooth(values, 0), values)
    with pytest.raises(EMOInputError, match="smooth"):
        median_smooth(values, -1)


def _rolling_video(portrait, speeds):
    """Frames of the portrait rotated in-plane about the face by the cumulative angle."""
    angles = np.cumsum(speeds)
    return np.stack([np.asarray(portrait.rotate(a, resample=Image.BICUBIC, center=FACE_CENTER))
                     for a in angles])


def test_in_plane_rotation_video_speeds(portrait, mediapipe_dir):
    truth = np.array([0, 1, 2, 3, 4, 5, 6, 6, 3, 0, 0, 2], float)
    speeds = head_rotation_speeds(_rolling_video(portrait, truth), mediapipe_dir)
    assert speeds.shape == (12,) and speeds.dtype == np.float32
    errors = np.abs(speeds[1:] - truth[1:])
    assert errors.max() < SPEED_TOLERANCE, (speeds, truth)
    assert speeds[0] == speeds[1]


def test_still_and_sliding_face_give_near_zero_speed(portrait, mediapipe_dir):
    still = np.stack([np.asarray(portrait)] * 5)
    # Measured <= 0.15 deg/frame (landmarker noise after the tracker warm-up).
    assert head_rotation_speeds(still, mediapipe_dir).max() < 0.5
    # A face sliding 4 px/frame without turning. MediaPipe's pinhole camera (63 deg vertical field
    # of view, focal ~418 px at 512 px) reads an image shift of 4 px as up to atan(4 / 418) = 0.55
    # deg of apparent yaw, so the bound is 1.0 (measured 0.46); a measure that followed image
    # motion rather than head rotation would exceed it.
    sliding = np.full((5, 512, 560, 3), 90, np.uint8)
    for i in range(5):
        sliding[i, :, 4 * i:4 * i + 512] = np.asarray(portrait)
    assert head_rotation_speeds(sliding, mediapipe_dir).max() < 1.0


def test_missing_frames_are_interpolated(portrait, mediapipe_dir, caplog):
    frames = list(_rolling_video(portrait, [0, 4, 4, 4]))
    frames[2] = np.full_like(frames[2], 30)  # face lost in one frame
    with caplog.at_level(logging.WARNING, logger="emo_core.face.head_pose"):
        rotations = head_rotations(frames, mediapipe_dir)
    assert "1 of 4 frames" in caplog.text
    speeds = rotation_speeds(rotations)
    # Frame 2 is the slerp midpoint of frames 1 and 3 (8 deg apart): both steps are equal.
    assert speeds[2] == pytest.approx(speeds[3], abs=1e-3)
    assert abs(speeds[2] - 4.0) < SPEED_TOLERANCE


def test_no_face_in_any_frame(mediapipe_dir, tmp_path):
    with pytest.raises(NoFaceError, match="set the head speed by hand"):
        head_rotation_speeds(np.full((2, 96, 96, 3), 30, np.uint8), mediapipe_dir)
    with pytest.raises(EMOInputError, match="face_landmarker.task"):
        head_rotations(np.zeros((1, 8, 8, 3), np.uint8), tmp_path)
