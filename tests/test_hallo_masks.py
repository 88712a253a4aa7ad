"""Hallo's region masks (emo_core.face.hallo_masks) on the fixture portrait with the real MediaPipe
FaceLandmarker model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emo_core.errors import EMOInputError, NoFaceError
from emo_core.face.detect import find_face
from emo_core.face.hallo_masks import (
    LIP_IDS,
    SILHOUETTE_IDS,
    expand_region,
    face_landmarks,
    hallo_region_masks,
)
from tests.fixture_sets import fixture_path

MEDIAPIPE = fixture_path("face_landmarker.task")
FIXTURES = MEDIAPIPE.parent  # the MediaPipe model folder
DETECTOR = fixture_path("blaze_face_short_range.tflite")
PORTRAIT = fixture_path("portrait_astronaut.png")
LATENT = 64  # Hallo's 512 px video



@pytest.fixture(scope="module")
def portrait():
    return np.asarray(Image.open(PORTRAIT).convert("RGB"))


@pytest.fixture(scope="module")
def masks(portrait):
    return hallo_region_masks(portrait, FIXTURES, LATENT)


def _image(values):
    side = int(round(len(values) ** 0.5))
    return values.reshape(side, side).numpy()


def test_shapes_per_level(masks):
    assert tuple(masks.face_region.shape) == (3, 8 * LATENT, 8 * LATENT)
    for name in ("full", "face", "lip"):
        sides = [int(round(m.numel() ** 0.5)) for m in getattr(masks, name)]
        assert sides == [64, 32, 16, 8], name
        for mask in getattr(masks, name):
            assert mask.ndim == 1 and mask.min() >= 0.0 and mask.max() <= 1.0
    small = hallo_region_masks(np.asarray(Image.open(PORTRAIT).convert("RGB")), FIXTURES, 16)
    assert [m.numel() for m in small.lip] == [256, 64, 16, 4]  # the tiny fixture's 128 px video
    assert tuple(small.face_region.shape) == (3, 128, 128)


def test_boxes_follow_hallo_rule(portrait, masks):
    landmarks = face_landmarks(portrait, FIXTURES)
    assert landmarks.shape == (478, 2)
    x0, x1, y0, y1 = masks.face_box
    oval = landmarks[list(SILHOUETTE_IDS)]
    width, height = np.round(oval.max(0)) - np.round(oval.min(0))
    # 1.2x the landmark extent (to the floored half-side), centred on the extent
    assert x1 - x0 == pytest.approx(1.2 * width, abs=2) and y1 - y0 == pytest.approx(1.2 * height, abs=2)
    assert masks.lip_box == expand_region(landmarks[list(LIP_IDS)], 512, 512, 2.0)
    # the face_region rectangle is exactly that box (512 px image -> 512 px video: no resampling)
    region = masks.face_region.numpy()
    assert np.array_equal(region[0], region[2])
    expected = np.zeros((512, 512))
    expected[y0:y1, x0:x1] = 1
    np.testing.assert_array_equal(region[0], expected)


def test_face_mask_covers_the_detected_face(masks):
    box = find_face(np.asarray(Image.open(PORTRAIT).convert("RGB")), DETECTOR)
    x0, x1, y0, y1 = masks.face_box
    assert x0 <= box.x and box.x1 <= x1 and y0 <= box.y and box.y1 <= y1, (masks.face_box, box)
    # and in the blurred level-0 masks the detected face centre is "face", not "background"
    cx, cy = (int(c * LATENT / 512) for c in box.center)
    assert _image(masks.full[0])[cy, cx] < 0.1
    assert _image(masks.face[0])[cy, cx] + _image(masks.lip[0])[cy, cx] > 0.9


def test_lip_mask_inside_face_mask(masks):
    fx0, fx1, fy0, fy1 = masks.face_box
    lx0, lx1, ly0, ly1 = masks.lip_box
    assert fx0 <= lx0 < lx1 <= fx1 and fy0 <= ly0 < ly1 <= fy1
    assert (lx1 - lx0) * (ly1 - ly0) < 0.25 * (fx1 - fx0) * (fy1 - fy0)
    for level in range(4):
        lip = _image(masks.lip[level])
        side = lip.shape[0]
        ys, xs = np.nonzero(lip > 0.5)  # the lip's blurred core, in level cells
        assert len(xs) > 0, level
        scale = side / 512  # the 512 px portrait squeezed onto the level grid
        assert fx0 * scale - 1 <= xs.min() and xs.max() <= fx1 * scale + 1, level
        assert fy0 * scale - 1 <= ys.min() and ys.max() <= fy1 * scale + 1, level


def test_full_face_lip_sum_to_one(masks):
    """full = 1 - F (8-bit truncated), face = max(F - L, 0), lip = L, with F and L normalised
    separately. Where F >= L (face > 0, or no lip) the three add to 1 up to the truncation
    (<= 1/255 at level 0; lower levels resize each mask separately: one rounding step per mask
    more). Where the lip blur exceeds the face blur (face saturates at 0) Hallo's masks add to
    1 + L - F > 1, which is reproduced, not corrected."""
    for level, tolerance in enumerate((1.0 / 255, 3.5 / 255, 3.5 / 255, 3.5 / 255)):
        full, face, lip = masks.full[level], masks.face[level], masks.lip[level]
        total = full + face + lip
        exact = ((lip == 0) | (face > 0)) if level == 0 else (lip == 0)
        assert exact.sum() > 0.5 * total.numel()
        assert (total[exact] - 1).abs().max() <= tolerance + 1e-6, level
        assert total.min() >= 1 - tolerance - 1e-6, level
    face0, lip0 = masks.face[0], masks.lip[0]
    assert ((face0 > 0) & (lip0 > 0)).sum() > 10  # the F > L overlap is really tested
    # the masks are soft (blurred), not binary
    face = _image(face0)
    assert ((face > 0.05) & (face < 0.95)).sum() > 20


def test_hallos_own_landmarker_file_is_accepted(tmp_path, portrait, masks):
    """Hallo keeps the same model as face_analysis/models/face_landmarker_v2_with_blendshapes.task."""
    (tmp_path / "face_landmarker_v2_with_blendshapes.task").write_bytes(MEDIAPIPE.read_bytes())
    np.testing.assert_array_equal(face_landmarks(portrait, tmp_path), face_landmarks(portrait, FIXTURES))
    with pytest.raises(EMOInputError, match="face_landmarker.task"):
        face_landmarks(portrait, tmp_path / "empty")


def test_no_face_raises():
    blank = np.full((256, 256, 3), 200, np.uint8)
    with pytest.raises(NoFaceError, match="no face"):
        hallo_region_masks(blank, FIXTURES, 32)
