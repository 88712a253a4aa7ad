"""Hallo's region masks: face region for the face locator, full / face / lip masks per UNet level.

Computed as Hallo's ``ImageProcessor.preprocess`` (hallo/datasets/image_processor.py and the mask
helpers of hallo/utils/util.py) computes them, from the MediaPipe FaceLandmarker (the same
``face_landmarker`` v2 model and 478-point mesh topology, IMAGE mode, one face) on the reference
image at its own resolution:

1. face box = bounding box of the 36 face-oval landmarks, lip box = that of the 20 outer-lip
   landmarks; both corners rounded, then grown around the centre (face by ``face_expand_ratio``,
   lip by 2.0) with Hallo's integer arithmetic, shifted back inside the image, and filled as
   0/255 rectangles. (Python slicing semantics are kept: a box larger than the image gets a
   negative start, which Hallo's slicing wraps — reproduced, with a warning.)
2. ``face_region`` = the face rectangle resized to the video size (PIL bilinear), three channels,
   / 255: the face locator's input, 0/1 except at resampled edges.
3. Each rectangle is resized to 64x64 (OpenCV bilinear), Gaussian-blurred (face kernel 51, lip
   kernel 31, sigma from the kernel size) and min-max normalised to 0..255:
   full = uint8((1 - face_blur / 255) * 255) (the "pose"/background weight), face =
   saturating face_blur - lip_blur, lip = lip_blur.
4. Each of the three 64x64 masks is resized (PIL bilinear) to ``latent_size / 2^i`` for
   i = 0..levels-1, / 255, flattened row-major: Hallo's mask list index i is the
   (latent / 2^i)^2-token UNet resolution.

OpenCV comes with MediaPipe (its ``opencv-contrib-python`` requirement); it is used for the three
steps Hallo does with OpenCV so the masks match Hallo's to the last 8-bit level.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import EMOInputError, NoFaceError
from ..image import to_rgb_uint8
from .mediapipe_models import import_mediapipe, load_model_buffer, mp_image

logger = logging.getLogger(__name__)

# MediaPipe face-mesh indices: face oval (silhouette) and outer lip contour.
SILHOUETTE_IDS = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
                  400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
                  103, 67, 109)
LIP_IDS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 146, 91, 181, 84, 17, 314, 405, 321,
           375)
# scripts/inference.py's --face_expand_ratio default (1.2) overrides default.yaml's 1.1.
DEFAULT_FACE_EXPAND_RATIO = 1.2
LIP_EXPAND_RATIO = 2.0
BLUR_SIZE = 64  # side of the blurred masks, independent of the video size
FACE_BLUR_KERNEL, LIP_BLUR_KERNEL = 51, 31
HALLO_LANDMARKER = "face_landmarker_v2_with_blendshapes.task"


@dataclass(frozen=True)
class HalloMasks:
    """Hallo's masks for one reference image.

    face_region: (3, S, S) float32, S = 8 * latent_size, the face locator's input (0/1, soft only
    at resampled edges). full / face / lip: lists over levels i = 0..levels-1 of (r_i * r_i,)
    float32 in [0, 1], r_i = latent_size // 2^i, row-major (Hallo's ``mask.view(1, -1)`` without
    the leading 1). face_box / lip_box: the rectangles (x0, x1, y0, y1) in reference pixels.
    """

    face_region: torch.Tensor
    full: list
    face: list
    lip: list
    face_box: tuple
    lip_box: tuple


def _landmarker_model(mediapipe_dir) -> bytes:
    """Model bytes: ``face_landmarker.task`` in ``mediapipe_dir``, or Hallo's copy of the same model
    (``face_landmarker_v2_with_blendshapes.task`` in ``face_analysis/models``), or a .task file."""
    path = Path(mediapipe_dir) if mediapipe_dir is not None else None
    if path is not None and path.is_file() and path.suffix == ".task":
        return path.read_bytes()
    if path is not None and not (path / "face_landmarker.task").is_file() \
            and (path / HALLO_LANDMARKER).is_file():
        return (path / HALLO_LANDMARKER).read_bytes()
    return load_model_buffer(mediapipe_dir, "landmarker")


def face_landmarks(image: np.ndarray, mediapipe_dir) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (478, 2) float64 landmark pixels (x * W, y * H) of the one face."""
    mediapipe, vision, base_options = import_mediapipe()
    options = vision.FaceLandmarkerOptions(
        base_options=base_options(model_asset_buffer=_landmarker_model(mediapipe_dir)),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=1,
    )
    try:
        landmarker = vision.FaceLandmarker.create_from_options(options)
    except (RuntimeError, ValueError) as error:
        raise EMOInputError(
            f"MediaPipe could not load the face landmarker from {str(mediapipe_dir)!r} ({error}); "
            "download face_landmarker.task again."
        ) from error
    with landmarker:
        result = landmarker.detect(mp_image(mediapipe, image))
    if len(result.face_landmarks) != 1:
        raise NoFaceError(
            "reference image: MediaPipe found no face for Hallo's face / lip masks; use a photo "
            "with one clearly visible, roughly frontal face."
        )
    height, width = image.shape[:2]
    return np.array([[p.x * width, p.y * height] for p in result.face_landmarks[0]])


def expand_region(points: np.ndarray, width: int, height: int, ratio: float) -> tuple:
    """Hallo's box rule: rounded bounding box of ``points`` (N, 2), grown ``ratio`` times around
    its (floored) centre in half-sides floored to whole pixels, shifted back inside the image.
    Returns (x0, x1, y0, y1) ints (may still exceed the image when the box is larger than it)."""
    low, high = np.round(points.min(axis=0)), np.round(points.max(axis=0))
    bounds = []
    for axis, limit in ((0, width), (1, height)):
        centre = (high[axis] + low[axis]) // 2
        half = ((high[axis] - low[axis]) * ratio) // 2
        start, end = centre - half, centre + half
        if start < 0:
            start, end = 0, end - start
        if end > limit:
            start, end = start - (end - limit), limit
        bounds += [round(start), round(end)]
    return tuple(bounds)


def box_mask(height: int, width: int, box: tuple, name: str) -> np.ndarray:
    """(height, width) uint8 with 255 inside ``box`` (x0, x1, y0, y1), numpy slicing as Hallo."""
    x0, x1, y0, y1 = box
    if x0 < 0 or y0 < 0:
        logger.warning("Hallo %s mask: the box %s is larger than the %dx%d image; Hallo's slicing "
                       "wraps its negative start (reproduced)", name, box, width, height)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 255
    return mask


def _cv2():
    try:
        import cv2
    except ImportError as error:
        raise EMOInputError(
            f"Hallo's masks need OpenCV (normally installed with mediapipe), which could not be "
            f"imported ({error}); install it with `pip install opencv-python-headless`."
        ) from error
    return cv2


def blurred(mask: np.ndarray, kernel: int) -> np.ndarray:
    """(H, W) uint8 -> (64, 64) uint8: bilinear resize, Gaussian blur, min-max to 0..255."""
    cv2 = _cv2()
    small = cv2.resize(mask, (BLUR_SIZE, BLUR_SIZE))
    smooth = cv2.GaussianBlur(small, (kernel, kernel), 0)
    return cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX)


def _levels(mask: np.ndarray, latent_size: int, levels: int) -> list:
    """(64, 64) uint8 -> [(r*r,) float32 for r = latent_size // 2^i] (PIL bilinear, / 255)."""
    image = Image.fromarray(mask)
    out = []
    for index in range(levels):
        side = latent_size // 2**index
        resized = np.asarray(image.resize((side, side), Image.BILINEAR))
        out.append(torch.from_numpy(resized.copy()).float().div(255).reshape(-1))
    return out


def hallo_region_masks(image, mediapipe_dir, latent_size: int, levels: int = 4,
                       face_expand_ratio: float = DEFAULT_FACE_EXPAND_RATIO) -> HalloMasks:
    """Hallo's face region and full / face / lip masks for the reference ``image`` (see module doc).

    image: the reference at its original resolution (Hallo computes the boxes on the file as
    loaded, then resizes the masks). mediapipe_dir: a folder with ``face_landmarker.task`` (or Hallo's ``face_analysis/models``
    with ``face_landmarker_v2_with_blendshapes.task``), or the .task file. latent_size: the square
    latent side (video side / 8; Hallo's 512 px -> 64); levels: how many UNet resolutions
    (latent / 2^i) get masks.
    """
    rgb = to_rgb_uint8(image, "reference image")
    if latent_size < 2**(levels - 1) or levels < 1:
        raise EMOInputError(
            f"latent_size={latent_size} is too small for {levels} mask levels; the video side "
            f"must be at least {8 * 2**(levels - 1)} px."
        )
    height, width = rgb.shape[:2]
    landmarks = face_landmarks(rgb, mediapipe_dir)
    face_box = expand_region(landmarks[list(SILHOUETTE_IDS)], width, height, face_expand_ratio)
    lip_box = expand_region(landmarks[list(LIP_IDS)], width, height, LIP_EXPAND_RATIO)
    face_rect = box_mask(height, width, face_box, "face")
    lip_rect = box_mask(height, width, lip_box, "lip")

    side = 8 * latent_size
    region = Image.fromarray(face_rect).convert("RGB").resize((side, side), Image.BILINEAR)
    face_region = torch.from_numpy(np.asarray(region).copy()).permute(2, 0, 1).float().div(255)

    face_blur = blurred(face_rect, FACE_BLUR_KERNEL)
    lip_blur = blurred(lip_rect, LIP_BLUR_KERNEL)
    full = ((1.0 - face_blur / 255.0) * 255).astype(np.uint8)  # truncation, as Hallo
    face = _cv2().subtract(face_blur, lip_blur)
    return HalloMasks(
        face_region=face_region,
        full=_levels(full, latent_size, levels),
        face=_levels(face, latent_size, levels),
        lip=_levels(lip_blur, latent_size, levels),
        face_box=face_box,
        lip_box=lip_box,
    )
