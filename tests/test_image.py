"""emo_core.image: every accepted layout/dtype -> (H, W, 3) uint8, clear errors, file loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from emo_core.errors import EMOInputError
from emo_core.image import load_image_file, to_rgb_frames, to_rgb_uint8

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


def test_uint8_rgb_is_kept_exactly_and_made_contiguous():
    flipped = RGB[:, ::-1]  # a non-contiguous view, as slicing produces
    out = to_rgb_uint8(flipped)
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, flipped)


@pytest.mark.parametrize("grey", [RGB[:, :, 0], RGB[:, :, :1]])
def test_greyscale_is_replicated_to_three_channels(grey):
    out = to_rgb_uint8(grey)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], RGB[:, :, 0])


def test_rgba_is_composited_over_white():
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, :, :3] = [10, 20, 30]
    rgba[0, :, 3] = [0, 255, 128]
    out = to_rgb_uint8(rgba)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])  # fully transparent -> background
    np.testing.assert_array_equal(out[0, 1], [10, 20, 30])  # opaque -> its own colour
    alpha = 128 / 255
    expected = np.rint(np.array([10, 20, 30]) * alpha + 255 * (1 - alpha))
    np.testing.assert_array_equal(out[0, 2], expected)


def test_comfyui_float_tensor_batch_of_one():
    values = torch.rand(1, 6, 5, 3)
    out = to_rgb_uint8(values)
    np.testing.assert_array_equal(out, np.rint(values[0].numpy() * 255).astype(np.uint8))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors(dtype):
    values = torch.tensor([[[0.0, 0.5, 1.0]]], dtype=dtype)
    np.testing.assert_array_equal(to_rgb_uint8(values), [[[0, 128, 255]]])


def test_uint16_and_bool():
    np.testing.assert_array_equal(to_rgb_uint8(np.full((1, 1), 65535, np.uint16)), [[[255] * 3]])
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[True, False]])),
                                  [[[255] * 3, [0] * 3]])


@pytest.mark.parametrize(
    "image, words",
    [
        (np.zeros((2, 4, 4, 3), np.float32), "batch of 2"),
        (np.zeros((3, 16, 16), np.uint8), "channel-first"),
        (np.zeros((4, 4, 2), np.uint8), "unsupported image shape"),
        (np.full((4, 4, 3), 200.0, np.float32), "divide 0..255"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.zeros((4, 4, 3), np.int32), "dtype int32"),
        ([[1, 2], [3, 4]], "numpy array or torch tensor"),
    ],
)
def test_bad_images_raise_clear_errors(image, words):
    with pytest.raises(EMOInputError, match=words) as info:
        to_rgb_uint8(image, name="reference image")
    assert "reference image" in str(info.value)  # the message names the input


def test_frames_from_batch_list_and_size_mismatch():
    batch = torch.rand(3, 4, 5, 3)
    frames = to_rgb_frames(batch)
    assert len(frames) == 3 and frames[2].shape == (4, 5, 3)
    assert len(to_rgb_frames(RGB)) == 1
    with pytest.raises(EMOInputError, match="different sizes"):
        to_rgb_frames([RGB, RGB[:4]])
    with pytest.raises(EMOInputError, match="no images"):
        to_rgb_frames([])


def test_load_applies_exif_orientation(tmp_path):
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[0, 0] = [255, 0, 0]  # red marks the stored top-left corner
    picture = Image.fromarray(pixels)
    exif = picture.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.png"  # PNG eXIf chunk: lossless, unlike a tiny JPEG
    picture.save(path, exif=exif)
    out = load_image_file(path)
    assert out.shape == (3, 2, 3)  # width and height swapped by the orientation tag
    # After a clockwise turn the stored top-left corner is at the top-right.
    np.testing.assert_array_equal(out[0, 1], [255, 0, 0])
    assert out.sum() == 255


def test_load_rgba_png_and_16_bit_grey(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 40
    rgba[0, 0, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    out = load_image_file(tmp_path / "cutout.png")
    np.testing.assert_array_equal(out[0, 0], [40, 40, 40])
    np.testing.assert_array_equal(out[1, 1], [255, 255, 255])

    grey16 = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    out = load_image_file(tmp_path / "grey16.png")
    np.testing.assert_array_equal(out[:, :, 0], np.rint(grey16 / 65535 * 255))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(EMOInputError, match="does not exist"):
        load_image_file(tmp_path / "missing.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(EMOInputError, match="broken.png") as info:
        load_image_file(broken)
    assert "could not be read" in str(info.value)
