"""Square face crops (the 512x512 talking-head framing EMO was trained on) and their inverse.

Framing (``face_crop_box``): the crop side is ``face_scale`` (default 2.5) times the larger side of
the detector box, so the BlazeFace box (brows to chin) covers 40 % of the crop width; the face
centre sits at ``face_center_y`` (default 0.42) of the crop height from the top, leaving room for
hair above and neck and shoulders below, as in HDTF / VFHQ-style crops. When the square fits inside
the image it is shifted inside (no padding: padded borders are artificial edges the model would
copy); otherwise it stays centred and ``crop_image`` pads with edge pixels (replicate), never a
mirrored copy of the face.

Coordinates are continuous pixels: pixel ``i`` covers ``[i, i + 1)``, which is also PIL's resize
convention, so the point mappings below are exact for resized crops.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import EMOInputError
from ..image import to_rgb_uint8
from .detect import FaceBox

logger = logging.getLogger(__name__)

DEFAULT_FACE_SCALE = 2.5
DEFAULT_FACE_CENTER_Y = 0.42


@dataclass(frozen=True)
class CropBox:
    """Square ``size`` x ``size`` region at ``(x0, y0)`` in source pixels, resized to ``out_size``.

    The region may extend outside the source image (padded on crop, ignored on paste back).
    """

    x0: int
    y0: int
    size: int
    out_size: int

    @property
    def scale(self) -> float:
        """Crop pixels per source pixel."""
        return self.out_size / self.size


def face_crop_box(face: FaceBox, image_size, out_size: int = 512,
                  face_scale: float = DEFAULT_FACE_SCALE,
                  face_center_y: float = DEFAULT_FACE_CENTER_Y) -> CropBox:
    """Square crop around ``face`` in an image of ``image_size`` (H, W); see the module doc."""
    if int(out_size) < 8:
        raise EMOInputError(f"crop out_size={out_size} is too small; use e.g. 512.")
    if not (math.isfinite(face_scale) and face_scale > 0):
        raise EMOInputError(
            f"face_scale={face_scale!r} is invalid; use a positive number, e.g. 2.5."
        )
    if not 0.0 <= face_center_y <= 1.0:
        raise EMOInputError(f"face_center_y={face_center_y!r} must be in 0..1, e.g. 0.42.")
    height, width = int(image_size[0]), int(image_size[1])
    size = max(round(max(face.w, face.h) * face_scale), 1)
    cx, cy = face.center
    x0, y0 = round(cx - size / 2.0), round(cy - face_center_y * size)
    if size <= width:
        x0 = min(max(x0, 0), width - size)
    if size <= height:
        y0 = min(max(y0, 0), height - size)
    return CropBox(int(x0), int(y0), int(size), int(out_size))


def _resize(rgb: np.ndarray, side: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (side, side, 3) uint8 (Lanczos; a no-op when the size already matches)."""
    if rgb.shape[0] == side and rgb.shape[1] == side:
        return rgb
    # np.array, not asarray: PIL's buffer is read-only (torch warns when wrapping it).
    return np.array(Image.fromarray(rgb).resize((side, side), Image.Resampling.LANCZOS))


def crop_image(image, crop: CropBox) -> np.ndarray:
    """Cut ``crop`` out of ``image`` (edge-padded where it leaves the image).

    image: any layout ``to_rgb_uint8`` accepts -> (out_size, out_size, 3) uint8.
    """
    rgb = to_rgb_uint8(image, name="image to crop")
    height, width = rgb.shape[:2]
    x1, y1 = crop.x0 + crop.size, crop.y0 + crop.size
    inside = rgb[max(crop.y0, 0):min(y1, height), max(crop.x0, 0):min(x1, width)]
    if inside.size == 0:
        raise EMOInputError(
            f"crop box {crop} lies entirely outside the {width}x{height} image; "
            "compute it with face_crop_box for this image."
        )
    pads = ((max(-crop.y0, 0), max(y1 - height, 0)), (max(-crop.x0, 0), max(x1 - width, 0)), (0, 0))
    region = np.pad(inside, pads, mode="edge") if any(sum(p) for p in pads) else inside
    return np.ascontiguousarray(_resize(region, crop.out_size))


def _feather_ramp(length: int, feather_px: float, start_inside: bool, end_inside: bool):
    """(length,) weights rising from ~0 to 1 over ``feather_px`` at edges lying inside the image."""
    ramp = np.ones(length, dtype=np.float32)
    if feather_px <= 0:
        return ramp
    position = np.arange(length, dtype=np.float32) + 0.5  # pixel centres
    if start_inside:
        ramp = np.minimum(ramp, position / feather_px)
    if end_inside:
        ramp = np.minimum(ramp, (length - position) / feather_px)
    return np.clip(ramp, 0.0, 1.0)


def paste_back(frame, original, crop: CropBox, feather_px: float = 16.0) -> np.ndarray:
    """Composite a generated crop back into the full image.

    frame: (out_size, out_size, 3) (any square size is resized to ``crop.size``);
    original: (H, W, 3). Returns (H, W, 3) uint8. The crop's edges that lie inside the image blend
    linearly into the original over ``feather_px`` source pixels; edges on or past the image border
    are not feathered (there is nothing to blend with).
    """
    if not (math.isfinite(feather_px) and feather_px >= 0):
        raise EMOInputError(f"feather_px={feather_px!r} is invalid; use 0 or more pixels.")
    patch = to_rgb_uint8(frame, name="frame to paste back")
    if patch.shape[0] != patch.shape[1]:
        raise EMOInputError(f"frame to paste back is {patch.shape[:2]}, expected a square crop.")
    result = to_rgb_uint8(original, name="original image").copy()
    height, width = result.shape[:2]
    patch = _resize(patch, crop.size)
    x1, y1 = crop.x0 + crop.size, crop.y0 + crop.size
    ys, xs = slice(max(crop.y0, 0), min(y1, height)), slice(max(crop.x0, 0), min(x1, width))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        raise EMOInputError(f"crop box {crop} lies entirely outside the {width}x{height} image.")
    ramp_y = _feather_ramp(crop.size, feather_px, crop.y0 > 0, y1 < height)
    ramp_x = _feather_ramp(crop.size, feather_px, crop.x0 > 0, x1 < width)
    alpha = np.minimum(ramp_y[:, None], ramp_x[None, :])[:, :, None]
    local = (slice(ys.start - crop.y0, ys.stop - crop.y0),
             slice(xs.start - crop.x0, xs.stop - crop.x0))
    blend = alpha[local] * patch[local] + (1.0 - alpha[local]) * result[ys, xs]
    result[ys, xs] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return result


def paste_back_frames(frames, original, crop: CropBox, feather_px: float = 16.0) -> np.ndarray:
    """``frames: (j, S, S, 3)`` generated crops -> ``(j, H, W, 3)`` uint8, each pasted into
    ``original (H, W, 3)`` with :func:`paste_back` (one chunk at a time keeps memory flat)."""
    return np.stack([paste_back(frame, original, crop, feather_px) for frame in frames])


def source_to_crop_points(points, crop: CropBox) -> np.ndarray:
    """(N, 2) x, y in source pixels -> (N, 2) float64 x, y in crop pixels."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (points - (crop.x0, crop.y0)) * crop.scale


def crop_to_source_points(points, crop: CropBox) -> np.ndarray:
    """(N, 2) x, y in crop pixels -> (N, 2) float64 x, y in source pixels (inverse of the above)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points / crop.scale + (crop.x0, crop.y0)


def _map_box(box: FaceBox, mapping, crop: CropBox) -> FaceBox:
    (x0, y0), (x1, y1) = mapping([(box.x, box.y), (box.x1, box.y1)], crop)
    left, top = math.floor(x0 + 1e-6), math.floor(y0 + 1e-6)  # 1e-6: float noise, not a pixel
    return FaceBox(left, top, math.ceil(x1 - 1e-6) - left, math.ceil(y1 - 1e-6) - top, box.score)


def box_to_crop(box: FaceBox, crop: CropBox) -> FaceBox:
    """Source-pixel box -> crop-pixel box (rounded outwards)."""
    return _map_box(box, source_to_crop_points, crop)


def box_to_source(box: FaceBox, crop: CropBox) -> FaceBox:
    """Crop-pixel box -> source-pixel box (rounded outwards)."""
    return _map_box(box, crop_to_source_points, crop)
