"""emo_core.face.mask: box arithmetic and the union face-locator mask over real detections."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from emo_core.errors import EMOInputError, NoFaceError
from emo_core.face.detect import FaceBox
from emo_core.face.mask import (
    DEFAULT_MASK_EXPAND,
    MAX_MASK_EXPAND,
    box_mask,
    expand_box,
    face_locator_mask,
    latent_box_mask,
    union_box,
)

TOLERANCE_PX = 10  # detector jitter between frames (see test_face_detect)


@pytest.fixture
def portrait(fixtures):
    return np.asarray(Image.open(fixtures("portrait_astronaut.png")).convert("RGB"))


def test_union_expand_and_clamp():
    union = union_box([FaceBox(10, 20, 30, 40, 0.9), FaceBox(50, 5, 10, 10, 0.7)])
    assert union == FaceBox(10, 5, 50, 55, 0.7)
    # 0.5 of the size on every side: same centre (50, 45), twice the width and height.
    grown = expand_box(FaceBox(40, 40, 20, 10), 0.5, (100, 100))
    assert grown == FaceBox(30, 35, 40, 20, 1.0)
    assert expand_box(FaceBox(40, 40, 20, 10), 0.0, (100, 100)) == FaceBox(40, 40, 20, 10, 1.0)
    clamped = expand_box(FaceBox(0, 90, 20, 10), 1.0, (100, 120))
    assert (clamped.x, clamped.y, clamped.x1, clamped.y1) == (0, 80, 40, 100)
    for bad in (-0.1, MAX_MASK_EXPAND + 0.01, float("nan"), float("inf"), True, "0.3"):
        with pytest.raises(EMOInputError, match="expand_ratio"):
            expand_box(FaceBox(0, 0, 1, 1), bad, (10, 10))
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
        result = face_locator_mask(np.stack(frames), mediapipe_dir, expand_ratio=0.0)
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
    tight = face_locator_mask(images, mediapipe_dir, expand_ratio=0.0).box
    wide = face_locator_mask(images, mediapipe_dir, expand_ratio=0.25).box
    assert abs(wide.w - 1.5 * tight.w) <= 2 and abs(wide.h - 1.5 * tight.h) <= 2  # 2: rounding
    assert abs(wide.center[0] - tight.center[0]) <= 1 and abs(wide.center[1] - tight.center[1]) <= 1


def test_no_face_anywhere_and_bad_inputs(portrait, mediapipe_dir):
    flat = np.full((2, 128, 128, 3), 40, np.uint8)
    with pytest.raises(NoFaceError, match="any of the 2 images") as info:
        face_locator_mask(flat, mediapipe_dir)
    # Library callers can change exactly these (MASK_ADVICE); nodes and the CLI word their own.
    assert "min_confidence" in str(info.value) and "box_mask()" in str(info.value)
    with pytest.raises(NoFaceError):
        face_locator_mask(portrait, mediapipe_dir, face_index=1)  # only one face there
    with pytest.raises(EMOInputError, match="different sizes"):
        face_locator_mask([portrait, portrait[:256]], mediapipe_dir)
    with pytest.raises(EMOInputError, match="expand_ratio"):
        face_locator_mask(portrait, mediapipe_dir, expand_ratio=-1)


# -- the default mask: the whole face plus room for motion (issue 13, item 1) ------------------
AREA_RANGE = (1.5, 4.0)  # mask area / detected face box area: whole face, not the whole crop


def check_default_mask(mask: np.ndarray, face: FaceBox) -> float:
    """``mask: (H, W)`` 0/1 covers every pixel of ``face``; returns its area / the box's."""
    inside = mask[face.y:face.y1, face.x:face.x1]
    assert inside.size == face.area and inside.min() == 1.0, (face, "not wholly inside the mask")
    ratio = float((mask > 0.5).sum()) / face.area
    assert AREA_RANGE[0] <= ratio <= AREA_RANGE[1], ratio
    return ratio


def test_default_mask_covers_the_face_with_room_for_motion(portrait, mediapipe_dir):
    from emo_core.face.detect import detect_faces

    (face,) = detect_faces(portrait, mediapipe_dir)
    result = face_locator_mask(portrait, mediapipe_dir)  # the library default
    ratio = check_default_mask(result.image_mask, face)
    # 0.25 on every side: 1.5x the width and height = 2.25x the area, give or take the
    # outward rounding of the box edges (one pixel per edge on a 95 px face).
    assert DEFAULT_MASK_EXPAND == 0.25 and abs(ratio - 2.25) < 0.1, ratio
    print(f"library default mask: {ratio:.2f}x the face box area")


def test_cli_default_mask_covers_the_face_with_room_for_motion(fixtures, mediapipe_dir,
                                                                 tmp_path, capsys):
    """The CLI path: argparse defaults -> GenerateRequest -> the crop + mask generate uses."""
    from emo_core.cli.cmd_generate import request_from_args
    from emo_core.cli.main import build_parser, main
    from emo_core.face.detect import detect_faces
    from emo_core.pipeline.run import prepare_portrait

    argv = ["generate", "--checkpoint", str(tmp_path / "none.safetensors"),
            "--wav2vec", str(tmp_path), "--mediapipe", str(mediapipe_dir),
            "--image", str(fixtures("portrait_astronaut.png")),
            "--audio", str(fixtures("speech_arctic_a0007.wav")), "--out", str(tmp_path / "o.mp4")]
    request = request_from_args(build_parser()[0].parse_args(argv))
    assert request.mask_expand == DEFAULT_MASK_EXPAND
    prepared = prepare_portrait(request, request.settings)
    (face,) = detect_faces(prepared.portrait, mediapipe_dir)  # on the crop the mask is drawn on
    ratio = check_default_mask(prepared.mask.image_mask, face)
    print(f"CLI default mask: {ratio:.2f}x the face box area on the {request.settings.size} px crop")
    # The flag means the same as everywhere: 0 = the detected box itself.
    tight = prepare_portrait(request_from_args(build_parser()[0].parse_args(
        [*argv, "--mask-expand", "0"])), request.settings).mask.box
    assert abs(tight.w - face.w) <= 2 and abs(tight.h - face.h) <= 2, (tight, face)
    # Out of range: refused before any model loads (exit 2, one line naming the flag).
    assert main([*argv, "--mask-expand", "-1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: --mask-expand=-1.0 is invalid"), error
