"""emo_core.face.detect on the real MediaPipe BlazeFace model and the bundled portrait."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from emo_core.errors import EMOInputError, NoFaceError
from emo_core.face.detect import FaceAdvice, FaceDetector, detect_faces, find_face

TRUE_BOX = (177, 82, 95, 95)  # x, y, w, h of the face in portrait_astronaut.png (fixture README)
TOLERANCE_PX = 10  # detector boxes vary by a few px with resampling; 10 px = ~10 % of the face


@pytest.fixture
def portrait(fixtures):
    return np.asarray(Image.open(fixtures("portrait_astronaut.png")).convert("RGB"))


@pytest.fixture
def detector(mediapipe_dir):
    with FaceDetector(mediapipe_dir) as opened:  # ~0.2 s to create; reused within a test
        yield opened


def assert_box_near(box, expected, tolerance=TOLERANCE_PX):
    got = (box.x, box.y, box.w, box.h)
    assert np.abs(np.subtract(got, expected)).max() <= tolerance, (got, expected)


def test_portrait_face_box(portrait, mediapipe_dir):
    box = find_face(portrait, mediapipe_dir)
    assert_box_near(box, TRUE_BOX)
    assert 0.5 <= box.score <= 1.0


def test_comfyui_tensor_input(detector, portrait):
    image = torch.tensor(portrait).float()[None] / 255.0  # (1, H, W, 3) float 0..1
    assert_box_near(detector.find(image), TRUE_BOX)


def test_rotated_copy_is_found_at_the_rotated_place(detector, portrait):
    angle = 18.0
    rotated = np.asarray(Image.fromarray(portrait).rotate(angle, resample=Image.BICUBIC))
    box = detector.find(rotated)
    # PIL rotates counter-clockwise about the image centre; move the true face centre likewise.
    cx, cy = TRUE_BOX[0] + TRUE_BOX[2] / 2 - 256, TRUE_BOX[1] + TRUE_BOX[3] / 2 - 256
    a = math.radians(angle)
    expected = (256 + cx * math.cos(a) + cy * math.sin(a),
                256 - cx * math.sin(a) + cy * math.cos(a))
    # 15 px: the detector box of a tilted face is axis-aligned and a little smaller.
    assert np.hypot(box.center[0] - expected[0], box.center[1] - expected[1]) < 15


def test_rgba_and_greyscale_copies(detector, portrait):
    alpha = np.zeros(portrait.shape[:2], np.uint8)
    alpha[20:480, 60:460] = 255  # transparent border: composited over white before detection
    rgba = np.dstack([portrait, alpha])
    assert_box_near(detector.find(rgba), TRUE_BOX)
    grey = np.asarray(Image.fromarray(portrait).convert("L"))  # (H, W)
    assert_box_near(detector.find(grey), TRUE_BOX)


@pytest.mark.parametrize("origin", [(1300, 600), (100, 100)])
def test_small_face_in_large_canvas_maps_back(detector, portrait, origin):
    canvas = np.full((1300, 2000, 3), 128, np.uint8)
    x, y = origin
    canvas[y:y + 512, x:x + 512] = portrait
    boxes = detector.detect(canvas)
    assert len(boxes) == 1  # the tile search must not add shirt patches or flags as faces
    assert_box_near(boxes[0], (TRUE_BOX[0] + x, TRUE_BOX[1] + y, TRUE_BOX[2], TRUE_BOX[3]))


def test_two_faces_face_index_is_left_to_right(detector, portrait):
    canvas = np.full((512, 1024, 3), 100, np.uint8)
    canvas[:, :512] = portrait
    canvas[64:448, 600:984] = np.asarray(Image.fromarray(portrait).resize((384, 384)))
    boxes = detector.detect(canvas)
    assert len(boxes) == 2 and boxes[0].x < boxes[1].x
    assert_box_near(detector.find(canvas, face_index=0), TRUE_BOX)
    scaled = (600 + TRUE_BOX[0] * 0.75, 64 + TRUE_BOX[1] * 0.75, TRUE_BOX[2] * 0.75, 71)
    assert_box_near(detector.find(canvas, face_index=1), scaled)
    with pytest.raises(NoFaceError, match="only 2 face"):
        detector.find(canvas, face_index=2)


def _no_face_images(portrait):
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 640)[None, :, None] * np.ones((480, 1, 3))
    noisy = np.clip(gradient + rng.normal(0, 20, gradient.shape), 0, 255).astype(np.uint8)
    return {
        "flat": np.full((300, 300, 3), 90, np.uint8),
        "corner of the portrait": portrait[300:, 300:].copy(),
        "gradient with noise": noisy,
    }


def test_no_face_raises_with_what_to_do(detector, portrait):
    for label, image in _no_face_images(portrait).items():
        with pytest.raises(NoFaceError) as info:
            detector.find(image, name=label)
        message = str(info.value)
        assert label in message
        # What a Python caller of FaceDetector can change (it takes no mask).
        for advice in ("closer to frontal", "crop", "lower min_confidence"):
            assert advice in message
        assert "mask" not in message
    # Callers word the advice for their own settings (a node, a CLI flag), nothing else.
    advice = FaceAdvice(no_face="set crop to center", face_index="--face-index")
    with pytest.raises(NoFaceError) as info:
        detector.find(np.full((300, 300, 3), 90, np.uint8), advice=advice)
    assert str(info.value).endswith("; set crop to center.")
    with pytest.raises(NoFaceError, match="only 1 face.* use a --face-index below 1"):
        detector.find(portrait, face_index=3, advice=advice)


def test_detect_faces_function_and_empty_result(mediapipe_dir):
    assert detect_faces(np.zeros((64, 64, 3), np.uint8), mediapipe_dir, 0.5) == []


def test_missing_model_and_bad_settings(tmp_path, mediapipe_dir, portrait):
    with pytest.raises(EMOInputError) as info:
        FaceDetector(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "blaze_face_short_range.tflite" in message
    assert "storage.googleapis.com/mediapipe-models/" in message
    (tmp_path / "blaze_face_short_range.tflite").write_bytes(b"not a model")
    with pytest.raises(EMOInputError, match="could not load"):
        FaceDetector(tmp_path)
    with pytest.raises(EMOInputError, match="min_confidence"):
        FaceDetector(mediapipe_dir, min_confidence=1.5)
    with pytest.raises(EMOInputError, match="negative"):
        find_face(portrait, mediapipe_dir, face_index=-1)


def test_detector_is_reusable_and_closes(mediapipe_dir, portrait):
    detector = FaceDetector(mediapipe_dir)
    with detector:
        first = detector.detect(portrait)
        assert detector.detect(portrait) == first  # same model, same frame -> same box
    with pytest.raises(RuntimeError, match="after close"):
        detector.detect(portrait)
