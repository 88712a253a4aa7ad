"""emo_core.speed: constant and keyframed curves at any fps, windows, bucket encoding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emo_core.errors import EMOInputError
from emo_core.speed import (
    constant_speed,
    keyframed_speed,
    parse_keyframes,
    speed_to_buckets,
    speed_windows,
)


def test_constant_speed():
    speeds = constant_speed(2.5, 7)
    assert speeds.dtype == np.float32 and speeds.tolist() == [2.5] * 7
    for value, frames, words in [(-1, 3, "speed -1"), (1, 0, "num_frames"), ("x", 3, "not a")]:
        with pytest.raises(EMOInputError, match=words):
            constant_speed(value, frames)


def test_parse_keyframes_forms():
    assert parse_keyframes("0:2.0, 3.5:8.0") == [(0.0, 2.0), (3.5, 8.0)]
    assert parse_keyframes(" 1 : 0 ;2:4\n 10:1 ,") == [(1.0, 0.0), (2.0, 4.0), (10.0, 1.0)]
    assert parse_keyframes("3") == [(0.0, 3.0)]  # a bare number is a constant


@pytest.mark.parametrize(
    "spec, words",
    [
        ("", "empty"),
        ("0-2", "neither a speed nor 'time:speed'"),
        ("0:1, 2", "not 'time:speed'"),
        ("0:1:2", "not 'time:speed'"),
        ("a:2", "time 'a' is not a number"),
        ("0:fast", "not a number"),
        ("0:-1", "speed '-1' is invalid"),
        ("-1:2", "time must be >= 0"),
        ("2:1, 1:3", "out of order"),
        ("1:1, 1:2", "duplicate"),
        ("0:nan", "invalid"),
    ],
)
def test_parse_keyframes_errors(spec, words):
    with pytest.raises(EMOInputError, match=words) as info:
        parse_keyframes(spec)
    assert "keyframe" in str(info.value)


def expected_curve(num_frames, fps):
    """The curve of "1:2, 3:8" written out by hand: 2 until 1 s, +3 deg/frame per s, 8 after 3 s."""
    values = []
    for i in range(num_frames):
        t = i / fps
        values.append(2.0 if t <= 1 else 8.0 if t >= 3 else 2.0 + 3.0 * (t - 1.0))
    return np.array(values, np.float32)


@pytest.mark.parametrize("fps", [12.5, 25.0, 29.97])
@pytest.mark.parametrize("num_frames", [1, 7, 100, 250])
def test_keyframes_resampled_at_any_fps(fps, num_frames):
    speeds = keyframed_speed("1:2, 3:8", num_frames, fps)
    assert speeds.shape == (num_frames,) and speeds.dtype == np.float32
    np.testing.assert_allclose(speeds, expected_curve(num_frames, fps), atol=1e-5)  # float32


def test_keyframes_from_pairs_and_validation():
    np.testing.assert_allclose(keyframed_speed([(0, 0), (1, 10)], 5, 4), [0, 2.5, 5, 7.5, 10])
    with pytest.raises(EMOInputError, match="out of order"):
        keyframed_speed([(1, 0), (0, 10)], 5, 4)
    with pytest.raises(EMOInputError, match="fps"):
        keyframed_speed("0:1", 5, 0)
    with pytest.raises(EMOInputError, match="invalid"):
        keyframed_speed([], 5, 25)


def test_windows_clamp_edges():
    speeds = np.array([1.0, 2.0, 3.0, 4.0])
    expected = [[1, 1, 1, 2, 3], [1, 1, 2, 3, 4], [1, 2, 3, 4, 4], [2, 3, 4, 4, 4]]
    np.testing.assert_array_equal(speed_windows(speeds, 2), expected)
    np.testing.assert_array_equal(speed_windows(speeds, 0), speeds[:, None])
    as_torch = speed_windows(torch.tensor(speeds), 1)
    assert isinstance(as_torch, torch.Tensor)
    np.testing.assert_array_equal(as_torch.numpy(), [[1, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]])
    np.testing.assert_array_equal(speed_windows(np.array([5.0]), 1), [[5, 5, 5]])
    with pytest.raises(ValueError, match="window"):
        speed_windows(speeds, -1)


def test_buckets_match_formula():
    centers, radii = [0.0, 2.0, 5.0, 10.0], [1.0, 2.0, 3.0, 5.0]
    windows = speed_windows(keyframed_speed("0:0, 1:12", 13, 12.0), 2)  # (13, 5)
    buckets = speed_to_buckets(windows, centers, radii)
    assert tuple(buckets.shape) == (13, 5, 4)
    for (i, j, d), value in np.ndenumerate(buckets.numpy()):
        expected = math.tanh(3 * (windows[i, j] - centers[d]) / radii[d])
        assert value == pytest.approx(expected, abs=1e-6)  # float32
    # Sanity of the encoding itself: at a centre the bucket is 0, far above it saturates at 1.
    assert speed_to_buckets(np.array([2.0, 100.0]), centers, radii)[:, 1].tolist() == [0.0, 1.0]


def test_stretch_speeds_nearest_index_and_empty():
    from emo_core.speed import stretch_speeds

    # linspace(0, 2, 5) = 0, .5, 1, 1.5, 2 -> rint (half to even) -> 0, 0, 1, 2, 2
    assert stretch_speeds([1.0, 2.0, 3.0], 5).tolist() == [1.0, 1.0, 2.0, 3.0, 3.0]
    assert stretch_speeds([4.0, 5.0, 6.0, 7.0], 2).tolist() == [4.0, 7.0]
    assert stretch_speeds([], 3).tolist() == [0.0, 0.0, 0.0]
