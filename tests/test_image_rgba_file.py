"""RGBA / LA / palette-with-transparency files are composited onto white in PIL (uint8, issue 23
class 10: no float copies of a big picture); the result equals the float formula of
``to_rgb_uint8`` to +-1 level (PIL's paste rounds in integers)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from emo_core.image import load_image_file, to_rgb_uint8


def test_rgba_file_matches_float_compositing(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    loaded = load_image_file(path)
    expected = to_rgb_uint8(rgba)  # the float path, applied to the same pixels
    assert loaded.shape == (37, 53, 3) and loaded.dtype == np.uint8
    assert np.abs(loaded.astype(int) - expected.astype(int)).max() <= 1


def test_transparent_and_grey_alpha_files(tmp_path):
    Image.new("LA", (8, 6), (0, 0)).save(tmp_path / "la.png")  # fully transparent -> white
    assert (load_image_file(tmp_path / "la.png") == 255).all()
    palette = Image.new("P", (8, 6), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.info["transparency"] = 0  # index 0 transparent; the picture uses index 1
    palette.save(tmp_path / "p.png", transparency=0)
    assert (load_image_file(tmp_path / "p.png") == np.array([10, 20, 30])).all()
