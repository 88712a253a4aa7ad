"""Face detection with the MediaPipe Tasks FaceDetector (BlazeFace short range).

BlazeFace short range looks at a 128x128 copy of the whole image, so a face that fills only a small
part of a large or wide frame (a 2000x1300 photo, two people side by side) is too small to be
found. ``FaceDetector.detect`` therefore first runs on the whole image and, only if that finds
nothing, searches square tiles of a pyramid (side = min(H, W), then halves down to ``_MIN_TILE``)
overlapping by half a tile, and merges the results with non-maximum suppression. The tile search
looks at dozens of sub-images, so its false positives multiply (on the bundled portrait, shirt
patches and flags score 0.3-0.72 while real faces score 0.94-0.96); tile detections must therefore
score at least halfway between ``min_confidence`` and 1 (0.75 for the default 0.5). With 50 %
overlap every face no larger than half a tile lies wholly inside some tile, so detections touching
a tile edge that is not an image edge (likely cut faces) are dropped. Faces much smaller than
the largest one may be missed when the whole-image pass already found a face. All boxes are in
pixels of the ORIGINAL image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import EMOInputError, NoFaceError
from ..image import to_rgb_uint8
from .mediapipe_models import import_mediapipe, load_model_buffer, mp_image

logger = logging.getLogger(__name__)

_DETECT_SIZE = 512  # images / tiles are downscaled to this side before detection (model sees 128)
_MIN_TILE = 192  # smallest pyramid tile (faces below ~40 px are out of scope); bounds the cost
_EDGE_MARGIN = 2  # px (tile coordinates): a box this close to an inner tile edge counts as cut
_NMS_IOU = 0.3
_NMS_CONTAINMENT = 0.7  # a box mostly inside a better one is the same face seen partially


@dataclass(frozen=True)
class FaceAdvice:
    """How a no-face error tells the user what to do, worded for the caller's own settings.

    ``no_face``: what to change when no face is found (only things that node or command offers);
    ``face_index``: the name the caller gives the face index (``face_index``, ``--face-index``).
    The defaults suit Python callers of ``emo_core`` (they can pass ``min_confidence``).
    """

    no_face: str = ("use a photo where the face is larger and closer to frontal, crop the image "
                    "nearer the face, or lower min_confidence")
    face_index: str = "face_index"


LIBRARY_ADVICE = FaceAdvice()


@dataclass(frozen=True)
class FaceBox:
    """Axis-aligned face box in pixels: top-left ``(x, y)``, size ``(w, h)``, detector score."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0

    @property
    def x1(self) -> int:
        return self.x + self.w

    @property
    def y1(self) -> int:
        return self.y + self.h

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2.0, self.y + self.h / 2.0

    @property
    def area(self) -> int:
        return self.w * self.h


def _intersection(a: FaceBox, b: FaceBox) -> int:
    width = min(a.x1, b.x1) - max(a.x, b.x)
    height = min(a.y1, b.y1) - max(a.y, b.y)
    return max(width, 0) * max(height, 0)


def _non_max_suppression(boxes: list[FaceBox]) -> list[FaceBox]:
    """Keep the best-scoring box of every group of overlapping boxes."""
    kept: list[FaceBox] = []
    for box in sorted(boxes, key=lambda b: b.score, reverse=True):
        duplicate = False
        for other in kept:
            inter = _intersection(box, other)
            union = box.area + other.area - inter
            smaller = max(min(box.area, other.area), 1)
            if inter / max(union, 1) > _NMS_IOU or inter / smaller > _NMS_CONTAINMENT:
                duplicate = True
                break
        if not duplicate:
            kept.append(box)
    return kept


def _tile_origins(length: int, tile: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` over ``length`` with stride tile/2, last flush."""
    if tile >= length:
        return [0]
    stride = max(tile // 2, 1)
    origins = list(range(0, length - tile, stride))
    origins.append(length - tile)
    return origins


class FaceDetector:
    """MediaPipe face detector created once and reused over many frames (a context manager).

    ``with FaceDetector(model_dir) as detector: boxes = detector.detect(frame)``.
    """

    def __init__(self, model_dir, min_confidence: float = 0.5):
        if not 0.0 < float(min_confidence) <= 1.0:
            raise EMOInputError(
                f"min_confidence={min_confidence!r} is out of range; use a value in (0, 1], "
                "e.g. 0.5 (lower finds more faces, and more false ones)."
            )
        self.min_confidence = float(min_confidence)
        self._mediapipe, vision, base_options = import_mediapipe()
        buffer = load_model_buffer(model_dir, "detector")
        options = vision.FaceDetectorOptions(
            base_options=base_options(model_asset_buffer=buffer),
            min_detection_confidence=self.min_confidence,
        )
        try:
            self._detector = vision.FaceDetector.create_from_options(options)
        except (RuntimeError, ValueError) as error:
            raise EMOInputError(
                f"MediaPipe could not load the face detector model from {str(model_dir)!r} "
                f"({error}); download blaze_face_short_range.tflite again."
            ) from error

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        detector, self._detector = getattr(self, "_detector", None), None
        if detector is not None:
            detector.close()

    def _run(self, rgb: np.ndarray, offset=(0, 0), inner_edges=None) -> list[FaceBox]:
        """Detect on ``rgb`` (H, W, 3) uint8, downscaled; boxes shifted by ``offset`` (x, y).

        ``inner_edges`` = (left, top, right, bottom) flags of tile edges that are not image edges:
        boxes touching them are dropped as probably cut.
        """
        if self._detector is None:
            raise RuntimeError("FaceDetector used after close()")
        height, width = rgb.shape[:2]
        scale = min(1.0, _DETECT_SIZE / max(height, width))
        if scale < 1.0:
            size = (max(round(width * scale), 1), max(round(height * scale), 1))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        result = self._detector.detect(mp_image(self._mediapipe, np.ascontiguousarray(rgb)))
        boxes = []
        for detection in result.detections:
            bb = detection.bounding_box
            x0, y0 = bb.origin_x / scale, bb.origin_y / scale
            x1, y1 = x0 + bb.width / scale, y0 + bb.height / scale
            if inner_edges is not None and _touches(inner_edges, (x0, y0, x1, y1), width, height):
                continue
            x0, y0 = max(x0, 0.0), max(y0, 0.0)  # clamp to the image the box was found in
            x1, y1 = min(x1, width), min(y1, height)
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            score = float(detection.categories[0].score) if detection.categories else 1.0
            boxes.append(FaceBox(round(x0 + offset[0]), round(y0 + offset[1]),
                                 round(x1 - x0), round(y1 - y0), score))
        return boxes

    def _tile_search(self, rgb: np.ndarray) -> list[FaceBox]:
        """Pyramid of overlapping square tiles; returns merged boxes in image coordinates."""
        height, width = rgb.shape[:2]
        boxes: list[FaceBox] = []
        tile = min(height, width)
        while tile >= _MIN_TILE:
            if tile < max(height, width):  # a tile as big as the image was already searched
                for y in _tile_origins(height, tile):
                    for x in _tile_origins(width, tile):
                        inner = (x > 0, y > 0, x + tile < width, y + tile < height)
                        crop = rgb[y:y + tile, x:x + tile]
                        boxes.extend(self._run(crop, offset=(x, y), inner_edges=inner))
            tile //= 2
        threshold = self.min_confidence + (1.0 - self.min_confidence) / 2.0  # see module doc
        return _non_max_suppression([box for box in boxes if box.score >= threshold])

    def detect(self, image, name: str = "image") -> list[FaceBox]:
        """All faces in ``image`` (any layout ``to_rgb_uint8`` takes), sorted left to right."""
        rgb = to_rgb_uint8(image, name=name)
        boxes = _non_max_suppression(self._run(rgb))
        if not boxes:
            boxes = self._tile_search(rgb)
            logger.debug("%s: whole-image pass found no face, tile search found %d",
                         name, len(boxes))
        return sorted(boxes, key=lambda b: (b.x, b.y))

    def find(self, image, face_index: int = 0, name: str = "image",
             advice: FaceAdvice = LIBRARY_ADVICE) -> FaceBox:
        """The ``face_index``-th face from the left; raises NoFaceError saying what to do
        (``advice`` words it for the caller's settings)."""
        if int(face_index) < 0:
            raise EMOInputError(
                f"{advice.face_index}={face_index} is negative; use 0 for the leftmost face."
            )
        rgb = to_rgb_uint8(image, name=name)
        boxes = self.detect(rgb, name=name)
        if not boxes:
            raise NoFaceError(
                f"no face found in {name} ({rgb.shape[1]}x{rgb.shape[0]} px); {advice.no_face}."
            )
        if face_index >= len(boxes):
            raise NoFaceError(
                f"{advice.face_index}={face_index} asked for, but only {len(boxes)} face(s) "
                f"found in {name}; use a {advice.face_index} below {len(boxes)} "
                "(0 = leftmost face)."
            )
        return boxes[face_index]


def _touches(inner_edges, box, width: int, height: int) -> bool:
    """Whether ``box`` (x0, y0, x1, y1) reaches an inner edge of a ``width`` x ``height`` tile."""
    left, top, right, bottom = inner_edges
    x0, y0, x1, y1 = box
    return ((left and x0 <= _EDGE_MARGIN) or (top and y0 <= _EDGE_MARGIN)
            or (right and x1 >= width - _EDGE_MARGIN) or (bottom and y1 >= height - _EDGE_MARGIN))


def detect_faces(image, model_dir, min_confidence: float = 0.5) -> list[FaceBox]:
    """Faces in one image, left to right (creates a detector; use FaceDetector for many frames)."""
    with FaceDetector(model_dir, min_confidence) as detector:
        return detector.detect(image)


def find_face(image, model_dir, face_index: int = 0, min_confidence: float = 0.5,
              advice: FaceAdvice = LIBRARY_ADVICE) -> FaceBox:
    """The ``face_index``-th face from the left in one image; raises NoFaceError."""
    with FaceDetector(model_dir, min_confidence) as detector:
        return detector.find(image, face_index, advice=advice)
