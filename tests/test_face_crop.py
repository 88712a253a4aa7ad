"""emo_core.face.crop: framing numbers, crop / paste-back round trips, feathering, point mapping."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emo_core.errors import EMOInputError
from emo_core.face.crop import (
    CropBox,
    box_to_crop,
    box_to_source,
    crop_image,
    crop_to_source_points,
    face_crop_box,
    paste_back,
    source_to_crop_points,
)
from emo_core.face.detect import FaceBox

FACE = FaceBox(177, 82, 95, 95)  # the portrait's face box


@pytest.fixture
def portrait(fixtures):
    return np.asarray(Image.open(fixtures("portrait_astronaut.png")).convert("RGB"))


def test_framing_puts_face_at_documented_place():
    crop = face_crop_box(FACE, (512, 512), out_size=512)
    assert crop.size == round(95 * 2.5)
    in_crop = box_to_crop(FACE, crop)
    # Face width 40 % of the crop, centre at x 0.5 and y 0.42 of the crop; 2 px: integer rounding.
    assert abs(in_crop.w - 0.4 * 512) <= 2
    assert abs(in_crop.center[0] - 256) <= 2 and abs(in_crop.center[1] - 0.42 * 512) <= 2


def test_crop_is_shifted_inside_when_it_fits():
    crop = face_crop_box(FaceBox(5, 300, 60, 60), (400, 600), out_size=256)
    assert crop.x0 == 0 and crop.y0 + crop.size == 400  # pushed right and up, no padding needed
    big = face_crop_box(FaceBox(10, 10, 80, 80), (100, 100), out_size=64)
    assert big.size == 200 and big.x0 < 0  # larger than the image: stays centred, gets padded


def test_padding_replicates_edge_pixels(portrait):
    small = portrait[100:200, 150:250]
    crop = CropBox(-20, -10, 140, 140)  # no resize: padded pixels are visible exactly
    out = crop_image(small, crop)
    np.testing.assert_array_equal(out[10:110, 20:120], small)
    np.testing.assert_array_equal(out[:10, 20:120], np.repeat(small[:1], 10, axis=0))
    np.testing.assert_array_equal(out[10:110, :20], np.repeat(small[:, :1], 20, axis=1))
    np.testing.assert_array_equal(out[120:, 130:], np.broadcast_to(small[-1, -1], (20, 10, 3)))


def test_identity_round_trip_is_exact(portrait):
    crop = face_crop_box(FACE, portrait.shape[:2], out_size=238)  # out_size == size: no resize
    back = paste_back(crop_image(portrait, crop), portrait, crop, feather_px=16)
    np.testing.assert_array_equal(back, portrait)


@pytest.mark.parametrize("out_size, mean_limit, p99_limit", [(512, 1.5, 10), (128, 6.0, 40)])
def test_resized_round_trip_inside_box(portrait, out_size, mean_limit, p99_limit):
    # Tolerances: upsampling 238 -> 512 -> 238 with Lanczos is near-lossless (measured mean 0.95,
    # p99 6 grey levels, from ringing at sharp edges); downsampling to 128 loses the detail finer
    # than 2 px (measured mean 4.0, p99 29). Outside the box nothing may change at all.
    crop = face_crop_box(FACE, portrait.shape[:2], out_size=out_size)
    back = paste_back(crop_image(portrait, crop), portrait, crop, feather_px=0)
    inside = (slice(crop.y0, crop.y0 + crop.size), slice(crop.x0, crop.x0 + crop.size))
    error = np.abs(back[inside].astype(int) - portrait[inside])
    assert error.mean() < mean_limit and np.percentile(error, 99) <= p99_limit
    outside = np.ones(portrait.shape[:2], bool)
    outside[inside] = False
    np.testing.assert_array_equal(back[outside], portrait[outside])


def test_feathering_blends_edges_inside_the_image():
    original = np.full((100, 100, 3), 200, np.uint8)
    crop = CropBox(20, 30, 50, 50)
    back = paste_back(np.zeros((50, 50, 3), np.uint8), original, crop, feather_px=10)
    row = back[55, :, 0].astype(float)  # a row through the middle of the crop
    assert row[19] == 200 and row[70] == 200  # just outside: untouched
    # Pixel k inside the left edge has weight (k + 0.5) / 10 for the pasted black frame.
    np.testing.assert_allclose(row[20:30], np.rint(200 * (1 - (np.arange(10) + 0.5) / 10)))
    assert row[30:60].max() == 0  # fully pasted beyond the feather band


def test_edges_on_the_image_border_are_not_feathered():
    original = np.full((60, 60, 3), 200, np.uint8)
    crop = CropBox(-10, 0, 40, 40)  # left edge outside, top edge on the border
    back = paste_back(np.zeros((40, 40, 3), np.uint8), original, crop, feather_px=8)
    assert back[0, 0, 0] == 0 and back[5, 2, 0] == 0  # corner region fully replaced
    assert back[20, 29, 0] > 0  # the right edge (inside the image) is feathered


def test_point_and_box_mapping_are_inverse():
    crop = CropBox(37, -12, 300, 512)
    points = np.random.default_rng(0).uniform(-50, 400, (20, 2))
    np.testing.assert_allclose(crop_to_source_points(source_to_crop_points(points, crop), crop),
                               points, atol=1e-9)
    np.testing.assert_allclose(source_to_crop_points([[37, -12], [337, 288]], crop),
                               [[0, 0], [512, 512]])
    box = FaceBox(100, 50, 75, 75)
    back = box_to_source(box_to_crop(box, crop), crop)
    # Rounding outwards twice may grow the box, by at most one pixel per side, never shrink it.
    assert 0 <= box.x - back.x <= 1 and 0 <= box.y - back.y <= 1
    assert 0 <= back.x1 - box.x1 <= 1 and 0 <= back.y1 - box.y1 <= 1
    exact = CropBox(100, 50, 256, 512)  # integer scale 2: the mapping is exact
    assert box_to_crop(box, exact) == FaceBox(0, 0, 150, 150)
    assert box_to_source(box_to_crop(box, exact), exact) == box


def test_bad_arguments(portrait):
    with pytest.raises(EMOInputError, match="outside"):
        crop_image(portrait, CropBox(600, 0, 50, 50))
    with pytest.raises(EMOInputError, match="square"):
        paste_back(np.zeros((10, 20, 3), np.uint8), portrait, CropBox(0, 0, 10, 10))
    with pytest.raises(EMOInputError, match="feather_px"):
        paste_back(np.zeros((10, 10, 3), np.uint8), portrait, CropBox(0, 0, 10, 10), -1)
    with pytest.raises(EMOInputError, match="face_scale"):
        face_crop_box(FACE, (512, 512), face_scale=0)
