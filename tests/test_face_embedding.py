"""Face embedding (emo_core.face.embedding / align / scrfd) with tiny ONNX models
(tests/onnx_tiny_models.py).

The models have the real insightface signatures: an SCRFD detector with a dynamic (1, 3, H, W)
input and 9 outputs (score / box / keypoints for strides 8, 16, 32, two anchors, stride units) and an
ArcFace recognizer (1, 3, 112, 112) -> (1, 512). Their weights are chosen so the outputs are known:
each stride's score head is the mean of ONE colour channel over its cell (stride 8 = red,
16 = green), so a planted solid square is a "face" at a known anchor; boxes and keypoints are
constant distances; the recognizer is global average pooling followed by a fixed linear map, so its
output tells which crop (and which channel order and normalisation) it was given.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")  # test-only dependency (pinned in .ci/requirements-ci.txt)
pytest.importorskip("onnxruntime")

from emo_core.errors import EMOInputError, NoFaceError  # noqa: E402
from emo_core.face.align import ARCFACE_TEMPLATE, align_face, similarity_transform  # noqa: E402
from emo_core.face.embedding import FaceEmbedder  # noqa: E402
from emo_core.face.onnx_graph import first_node_names  # noqa: E402
from tests.onnx_tiny_models import (  # noqa: E402
    BOX,
    KPS,
    build_detector,
    build_recognizer,
    expected_embedding,
    write_face_models,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """Hallo's layout: face_analysis/models/ with a landmark-like model that sorts first."""
    return write_face_models(tmp_path_factory.mktemp("face_analysis"))


@pytest.fixture(scope="module")
def embedder(model_dir):
    return FaceEmbedder(model_dir)


def _anchor_expectation(stride, row, col, anchor=0, scale=1.0):
    centre = np.array([col, row], np.float64) * stride
    left, top, right, bottom = BOX[stride][anchor]
    box = np.array([centre[0] - left * stride, centre[1] - top * stride,
                    centre[0] + right * stride, centre[1] + bottom * stride]) / scale
    kps = (centre + np.array(KPS) * stride) / scale
    return box, kps


def test_models_are_found_by_signature(embedder):
    assert embedder.detector_path.name == "scrfd_10g_bnkps.onnx"
    assert embedder.recognizer_path.name == "glintr100.onnx"  # 2d106det (192 px) skipped
    assert (embedder.input_mean, embedder.input_std) == (127.5, 127.5)


def test_planted_detection_decodes_to_box_and_keypoints(embedder):
    image = np.zeros((640, 640, 3), np.uint8)
    image[160:168, 240:248, 0] = 255  # exactly stride-8 cell (row 20, col 30)
    faces = embedder.detect(image)
    assert len(faces) == 1  # anchor 1 of the same cell overlaps (IoU 0.95) and is suppressed
    box, kps = _anchor_expectation(8, 20, 30)
    np.testing.assert_allclose(faces[0].box, box, atol=1e-4)
    np.testing.assert_allclose(faces[0].keypoints, kps, atol=1e-4)
    cell_mean = (255 - 127.5) / 128
    assert faces[0].score == pytest.approx(1 / (1 + math.exp(-(10 * cell_mean - 5))), abs=1e-5)


def test_detection_is_mapped_back_from_the_letterbox(embedder):
    """480x320 image -> resized to 640x426 (scale 426 / 320): boxes come back in original px."""
    image = np.zeros((320, 480, 3), np.uint8)
    image[40:70, 170:200, 1] = 255  # a green square: stride 16 fires, stride 8 does not
    faces = embedder.detect(image)
    assert len(faces) == 1
    scale = 426 / 320
    width, height = faces[0].box[2] - faces[0].box[0], faces[0].box[3] - faces[0].box[1]
    assert width == pytest.approx(6 * 16 / scale, abs=1e-3)
    assert height == pytest.approx(7 * 16 / scale, abs=1e-3)
    # the anchor centre is a stride-16 grid point of the canvas inside the planted square
    centre_canvas = (faces[0].box[:2] + np.array([3, 3]) * 16 / scale) * scale
    np.testing.assert_allclose(centre_canvas % 16, 0, atol=1e-3)
    assert 170 <= centre_canvas[0] / scale <= 200 and 40 <= centre_canvas[1] / scale <= 70


def test_embedding_is_of_the_largest_face_raw_and_rgb(embedder):
    image = np.zeros((640, 640, 3), np.uint8)
    image[160:168, 240:248, 0] = 255  # small "face" (stride 8, box 48x64)
    image[384:400, 96:112] = (30, 255, 90)  # larger "face" (stride 16, box 96x112)
    embedding = embedder.embed(image)
    assert embedding.shape == (512,) and embedding.dtype == np.float32
    _, kps = _anchor_expectation(16, 24, 6)
    crop, _ = align_face(image, kps)
    np.testing.assert_allclose(embedding, expected_embedding(crop), atol=1e-4)
    # the recognizer saw RGB: the swapped-channel crop gives a clearly different vector
    assert np.abs(embedding - expected_embedding(crop[..., ::-1])).max() > 0.05
    assert not np.isclose(np.linalg.norm(embedding), 1.0, atol=1e-2)  # raw, not unit-normalised


def test_no_face_raises_or_gives_hallos_zero_embedding(embedder):
    grey = np.full((200, 300, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="no face"):
        embedder.embed(grey)
    zeros = embedder.embed(grey, zeros_if_no_face=True)
    assert zeros.shape == (512,) and zeros.dtype == np.float32 and not zeros.any()


def test_missing_models_name_the_folder_and_the_source(tmp_path):
    for target in (tmp_path / "absent", tmp_path):
        with pytest.raises(EMOInputError) as info:
            FaceEmbedder(target)
        text = str(info.value)
        assert "models/insightface" in text and "face_analysis" in text
        assert "fudan-generative-ai/hallo" in text and str(target) in text
    build_detector(tmp_path / "scrfd_10g_bnkps.onnx")
    with pytest.raises(EMOInputError, match="no recognizer"):
        FaceEmbedder(tmp_path)


def test_comfyui_pack_layout_and_mxnet_normalisation(tmp_path):
    pack = tmp_path / "models" / "antelopev2"  # ComfyUI: models/insightface/models/antelopev2/
    pack.mkdir(parents=True)
    # a face swapper's lone model in the root (two inputs, 128 px) is neither task: skipped
    build_recognizer(tmp_path / "inswapper_128.onnx", size=128, second_input=True)
    build_detector(pack / "scrfd_10g_bnkps.onnx")
    build_recognizer(pack / "glintr100.onnx", own_normalisation=True)
    assert first_node_names(pack / "glintr100.onnx", 8) == ["_minus0", "_mul0", "pool", "flat", "fc"]
    embedder = FaceEmbedder(tmp_path)
    assert embedder.folder == pack
    assert (embedder.input_mean, embedder.input_std) == (0.0, 1.0)
    crop = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    # the graph normalises itself, so raw pixels in give the same numbers as the 127.5 model
    np.testing.assert_allclose(embedder.embed_aligned(crop), expected_embedding(crop), atol=1e-4)


def _render_blobs(points, size, sigma):
    """(H, W, 3) uint8 image with a Gaussian blob (peak 250) at each point, one channel per blob."""
    height, width = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width, 3))
    for k, (x, y) in enumerate(points):
        image[..., k % 3] += 250 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _centroid(channel, x, y, radius):
    ys, xs = np.mgrid[0:channel.shape[0], 0:channel.shape[1]]
    near = (xs - x) ** 2 + (ys - y) ** 2 <= radius**2
    weights = channel.astype(np.float64) * near
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


@pytest.mark.parametrize("scale", [0.6, 2.3])
def test_alignment_reproduces_the_template(scale):
    """Blobs at T(template) in a big image, T a known similarity: the aligned crop must put every
    blob back on the template. A half-pixel convention error in the sampler would shift the blobs
    by 0.5 source px = 0.5 / scale crop px (0.83 px at scale 0.6), far above the 0.15 px allowed;
    what remains is blob truncation and 8-bit rounding (measured 0.011 px)."""
    angle = math.radians(17)
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)],
                                 [math.sin(angle), math.cos(angle)]])
    keypoints = ARCFACE_TEMPLATE @ rotation.T + np.array([150.3, 90.7])
    image = _render_blobs(keypoints, (400, 420), sigma=3.0 * scale)
    crop, matrix = align_face(image, keypoints)
    np.testing.assert_allclose(matrix[:, :2], np.linalg.inv(rotation), atol=1e-9)
    for k, (x, y) in enumerate(ARCFACE_TEMPLATE):
        centroid = _centroid(crop[..., k % 3], x, y, radius=8)
        assert np.abs(centroid - (x, y)).max() < 0.15, (k, centroid, (x, y))


def test_similarity_is_the_least_squares_fit():
    """Noisy keypoints: Umeyama equals the linear least-squares fit of [[a, -b, tx], [b, a, ty]]."""
    rng_local = np.random.default_rng(3)
    src = ARCFACE_TEMPLATE * 1.7 + 40 + rng_local.normal(scale=2.0, size=(5, 2))
    matrix = similarity_transform(src, ARCFACE_TEMPLATE)
    rows = []
    for x, y in src:
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), ARCFACE_TEMPLATE.ravel(), rcond=None)[0]
    np.testing.assert_allclose(matrix, [[a, -b, tx], [b, a, ty]], atol=1e-9)


def test_template_for_128_px_recognizers():
    """insightface's rule for 128-multiple inputs: template * size / 128, shifted 8 * size / 128 px."""
    keypoints = ARCFACE_TEMPLATE * 2.0 + 30.0
    image = np.zeros((300, 300, 3), np.uint8)
    _, matrix = align_face(image, keypoints, size=128)
    mapped = keypoints @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, ARCFACE_TEMPLATE + [8.0, 0.0], atol=1e-9)
    with pytest.raises(EMOInputError, match="multiple of 112 or 128"):
        align_face(image, keypoints, size=100)
