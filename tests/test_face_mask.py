"""emo_core.face.mask: box arithmetic and the union face-locator mask over real detections."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from emo_core.errors import EMOInputError, NoFaceError
from emo_core.face.detect import FaceBox
from emo_core.face.mask import box_mask, expand_box, face_locator_mask, latent_box_mask, union_box

TOLERANCE_PX = 10  # detector jitter between frames (see test_face_detect)


@pytest.fixture
def portrait(fixtures):
    return np.asarray(Image.open(fixtures("portrait_astronaut.png")).convert("RGB"))


def test_union_expand_and_clamp():
    union = union_box([FaceBox(10, 20, 30, 40, 0.9), FaceBox(50, 5, 10, 10, 0.7)])
    assert union == FaceBox(10, 5, 50, 55, 0.7)
    grown = expand_box(FaceBox(40, 40, 20, 10), 2.0, (100, 100))
    assert grown == FaceBox(30, 35, 40, 20, 1.0)  # same centre (50, 45), twice the size
    clamped = expand_box(FaceBox(0, 90, 20, 10), 3.0, (100, 120))
    assert (clamped.x, clamped.y, clamped.x1, clamped.y1) == (0, 80, 40, 100)
    with pytest.raises(EMOInputError, match="expand_ratio"):
        expand_box(FaceBox(0, 0, 1, 1), 0.0, (10, 10))
    with pytest.raises(ValueError):
        union_box([])


def test_box_masks_at_image_and_latent_size():
    mask = box_mask(FaceBox(3, 2, 4, 5), 10, 12)
    assert mask.dtype == np.float32 and mask.sum() == 20
    assert mask[2:7, 3:7].min() == 1.0 and mask[1, 3] == 0 and mask[2, 7] == 0
    latent = latent_box_mask(FaceBox(9, 17, 10, 6), 64, 48)  # x 9..19, y 17..23
    assert latent.shape == (8, 6)
    # Cells touched: x 1..2 (8..24 px), y 2 (16..24 px): rounded outwards, never cutting the face.
    np.testing.assert_array_equal(np.argwhere(latent), [[2, 1], [2, 2]])


def _canvas(portrait, x, y):
    canvas = np.full((640, 704, 3), 120, np.uint8)
    canvas[y:y + 512, x:x + 512] = portrait
    return canvas


def test_union_over_moving_frames_skips_faceless_frame(portrait, mediapipe_dir, caplog):
    offsets = [(0, 0), (96, 40), (192, 128)]
    frames = [_canvas(portrait, x, y) for x, y in offsets]
    frames.insert(1, np.full((640, 704, 3), 120, np.uint8))  # a frame without a face
    with caplog.at_level(logging.WARNING, logger="emo_core.face.mask"):
        result = face_locator_mask(np.stack(frames), mediapipe_dir, expand_ratio=1.0)
    assert "1 of 4 frames" in caplog.text
    # Union of the true boxes: x 177..(177+192+95), y 82..(82+128+95).
    expected = (177, 82, 192 + 95, 128 + 95)
    got = (result.box.x, result.box.y, result.box.w, result.box.h)
    assert np.abs(np.subtract(got, expected)).max() <= TOLERANCE_PX, got
    assert result.image_mask.shape == (640, 704) and result.latent_mask.shape == (80, 88)
    assert set(np.unique(result.image_mask)) == {0.0, 1.0}
    assert result.image_mask.sum() == result.box.w * result.box.h
    # Every image pixel of the box lies in a latent cell that is set.
    ys, xs = np.nonzero(result.image_mask)
    assert result.latent_mask[ys // 8, xs // 8].min() == 1.0


def test_expand_ratio_grows_around_centre(portrait, mediapipe_dir):
    images = torch.tensor(portrait)[None].float() / 255.0  # ComfyUI IMAGE (1, H, W, 3)
    tight = face_locator_mask(images, mediapipe_dir, expand_ratio=1.0).box
    wide = face_locator_mask(images, mediapipe_dir, expand_ratio=1.5).box
    assert abs(wide.w - 1.5 * tight.w) <= 2 and abs(wide.h - 1.5 * tight.h) <= 2  # 2: rounding
    assert abs(wide.center[0] - tight.center[0]) <= 1 and abs(wide.center[1] - tight.center[1]) <= 1


def test_no_face_anywhere_and_bad_inputs(portrait, mediapipe_dir):
    flat = np.full((2, 128, 128, 3), 40, np.uint8)
    with pytest.raises(NoFaceError, match="any of the 2 images") as info:
        face_locator_mask(flat, mediapipe_dir)
    assert "own face mask" in str(info.value)
    with pytest.raises(NoFaceError):
        face_locator_mask(portrait, mediapipe_dir, face_index=1)  # only one face there
    with pytest.raises(EMOInputError, match="different sizes"):
        face_locator_mask([portrait, portrait[:256]], mediapipe_dir)
    with pytest.raises(EMOInputError, match="expand_ratio"):
        face_locator_mask(portrait, mediapipe_dir, expand_ratio=-1)
