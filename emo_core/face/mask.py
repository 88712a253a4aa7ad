"""Face Locator mask: the union of the face boxes over a clip, expanded, at image and latent size.

EMO's Face Locator is a "weak" condition: the face may move anywhere inside the box, so the box is
the union over all frames, grown to leave room for head motion.

``expand_ratio`` has ONE meaning everywhere (this module, ``GenerateRequest.mask_expand``, the CLI's
``--mask-expand``, the Face Locator Mask node, the example workflows): grow the box by this
fraction of its width on the left and on the right, and of its height at the top and at the
bottom. 0 keeps the detected box; the default 0.25 gives a box 1.5x as wide and high (2.25x the
area). Why 0.25: training masks are the union of the per-frame boxes of a clip, but at inference
one reference image has no motion of its own and one mask serves every clip, so it must hold the
whole head range of the video. Talking-head footage (HDTF-like) moves the BlazeFace box (brows to
chin) by up to about a quarter of its size (a 25 degree yaw or a nod), so a quarter on every side
covers it while the mask (60 % of the 2.5x face crop's side) still pins the face position.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ..errors import EMOInputError, NoFaceError
from ..image import to_rgb_frames
from .detect import FaceAdvice, FaceBox, FaceDetector
from .mask_expand import (  # noqa: F401  (re-exported: callers import them from here)
    DEFAULT_MASK_EXPAND,
    MASK_EXPAND_HELP,
    MAX_MASK_EXPAND,
    check_mask_expand,
)

logger = logging.getLogger(__name__)

LATENT_SCALE = 8  # SD VAE downsampling factor

MASK_ADVICE = FaceAdvice(
    no_face="use a photo where the face is larger and closer to frontal, lower min_confidence, "
            "or build the mask yourself with box_mask()")


@dataclass(frozen=True)
class FaceMask:
    """image_mask: (H, W) float32 {0, 1}; latent_mask: (H//8, W//8) float32 {0, 1}; box: FaceBox."""

    image_mask: np.ndarray
    latent_mask: np.ndarray
    box: FaceBox


def union_box(boxes) -> FaceBox:
    """Smallest box containing all ``boxes``; its score is the lowest of theirs."""
    boxes = list(boxes)
    if not boxes:
        raise ValueError("union_box needs at least one box, got none")
    x0, y0 = min(b.x for b in boxes), min(b.y for b in boxes)
    x1, y1 = max(b.x1 for b in boxes), max(b.y1 for b in boxes)
    return FaceBox(x0, y0, x1 - x0, y1 - y0, min(b.score for b in boxes))


def expand_box(box: FaceBox, expand_ratio: float, image_size) -> FaceBox:
    """Grow ``box`` by ``expand_ratio`` x its width (height) on each side, clamped to the image.

    image_size: (H, W). 0 keeps the box, 0.25 makes it 1.5x as wide and high around the same
    centre; the result is at least 1 px wide and high.
    """
    scale = 1.0 + 2.0 * check_mask_expand(expand_ratio)
    height, width = int(image_size[0]), int(image_size[1])
    cx, cy = box.center
    half_w, half_h = box.w * scale / 2.0, box.h * scale / 2.0
    x0 = min(max(math.floor(cx - half_w), 0), width - 1)
    y0 = min(max(math.floor(cy - half_h), 0), height - 1)
    x1 = max(min(math.ceil(cx + half_w), width), x0 + 1)
    y1 = max(min(math.ceil(cy + half_h), height), y0 + 1)
    return FaceBox(x0, y0, x1 - x0, y1 - y0, box.score)


def box_mask(box: FaceBox, height: int, width: int) -> np.ndarray:
    """(height, width) float32 mask: 1 inside ``box`` (clipped to the frame), 0 outside."""
    mask = np.zeros((int(height), int(width)), dtype=np.float32)
    mask[max(box.y, 0):max(box.y1, 0), max(box.x, 0):max(box.x1, 0)] = 1.0
    return mask


def latent_box_mask(box: FaceBox, height: int, width: int, scale: int = LATENT_SCALE) -> np.ndarray:
    """(height//scale, width//scale) float32 mask of every latent cell the box touches.

    Rounded outwards (floor start, ceil end) so the latent mask always covers the whole face.
    """
    cell = FaceBox(box.x // scale, box.y // scale,
                   math.ceil(box.x1 / scale) - box.x // scale,
                   math.ceil(box.y1 / scale) - box.y // scale, box.score)
    return box_mask(cell, height // scale, width // scale)


def face_locator_mask(images, model_dir, expand_ratio: float = DEFAULT_MASK_EXPAND,
                      face_index: int = 0, min_confidence: float = 0.5,
                      advice: FaceAdvice = MASK_ADVICE) -> FaceMask:
    """Union face box over ``images`` -> FaceMask.

    images: (B, H, W, 3) array/tensor, one (H, W, 3) image or a list of them (same size).
    Frames without a face (or with fewer than ``face_index + 1`` faces) are skipped and logged;
    NoFaceError when no frame has one, worded by ``advice`` for the caller's settings.
    """
    if int(face_index) < 0:
        raise EMOInputError(
            f"{advice.face_index}={face_index} is negative; use 0 for the leftmost face.")
    frames = to_rgb_frames(images, name="face mask images")
    check_mask_expand(expand_ratio)  # before the detector runs
    height, width = frames[0].shape[:2]
    boxes, missing = [], []
    with FaceDetector(model_dir, min_confidence) as detector:
        for i, frame in enumerate(frames):
            found = detector.detect(frame, name=f"image {i}")
            if face_index < len(found):
                boxes.append(found[face_index])
            else:
                missing.append(i)
    if not boxes:
        which = "the image" if len(frames) == 1 else f"any of the {len(frames)} images"
        raise NoFaceError(
            f"no face ({advice.face_index}={face_index}) found in {which} ({width}x{height} px); "
            f"{advice.no_face}."
        )
    if missing:
        logger.warning("no face found in %d of %d frames (first: %s); they are left out of the "
                       "face mask", len(missing), len(frames), missing[:5])
    box = expand_box(union_box(boxes), expand_ratio, (height, width))
    return FaceMask(box_mask(box, height, width), latent_box_mask(box, height, width), box)
