"""Five-point face alignment to the ArcFace 112x112 template, and the bilinear sampling it needs.

The recognition networks of insightface (``glintr100.onnx``, ``w600k_r50.onnx``) were trained on
faces warped so that the detector's five keypoints (left eye, right eye, nose tip, left and right
mouth corner, in image coordinates) land on a fixed template. The warp is the similarity transform
(rotation, uniform scale, translation) that best maps the keypoints onto the template in the least
squares sense (Umeyama 1991, with scale), sampled bilinearly with pixel centres at integer
coordinates and zeros outside the image — what OpenCV's ``warpAffine`` does, written here with numpy
so no OpenCV dependency is needed.
"""

from __future__ import annotations

import numpy as np

from ..errors import EMOInputError

ARCFACE_SIZE = 112
# Keypoint positions of the ArcFace training crops (x, y) in a 112x112 image: left eye, right eye,
# nose tip, left mouth corner, right mouth corner.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def similarity_transform(src, dst) -> np.ndarray:
    """Least-squares similarity ``M`` (2, 3) with ``M @ [x, y, 1] ≈ dst`` for the points of ``src``.

    src, dst: (N, 2) point sets, N >= 2. Umeyama's closed form: the rotation comes from the SVD of
    the cross-covariance (a reflection is never chosen), the scale from the singular values.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two (N>=2, 2) point sets of equal shape, got {src.shape}, {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    src_variance = (src_centred**2).sum() / len(src)
    if src_variance <= 1e-12:
        raise EMOInputError(
            "face keypoints: all five points coincide, so no alignment exists; "
            "the detector output is unusable for this image — try a larger, frontal face."
        )
    covariance = dst_centred.T @ src_centred / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    signs = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # the best orthogonal map would mirror the face
        signs[-1] = -1.0
    rotation = u @ np.diag(signs) @ vt
    scale = float(singular @ signs) / src_variance
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def invert_affine(matrix) -> np.ndarray:
    """Inverse of a (2, 3) affine map, as (2, 3)."""
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def bilinear_sample(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, border: str) -> np.ndarray:
    """Sample ``image`` (H, W, C) at float pixel coordinates ``xs``, ``ys`` (any equal shape).

    Pixel centres are at integer coordinates. border="zero": neighbours outside the image count as
    0 (OpenCV BORDER_CONSTANT); border="replicate": coordinates are clamped to the image (what
    OpenCV's resize does at its edges). Returns float64 of shape ``xs.shape + (C,)``.
    """
    height, width = image.shape[:2]
    data = image.astype(np.float64)
    if border == "zero":  # one ring of zeros: every neighbour of an in-range coordinate exists
        data = np.pad(data, ((1, 1), (1, 1), (0, 0)))
        xs, ys = np.clip(xs + 1.0, 0.0, width + 1.0), np.clip(ys + 1.0, 0.0, height + 1.0)
        height, width = height + 2, width + 2
    elif border == "replicate":
        xs, ys = np.clip(xs, 0.0, width - 1.0), np.clip(ys, 0.0, height - 1.0)
    else:
        raise ValueError(f"border must be 'zero' or 'replicate', got {border!r}")
    x0 = np.clip(np.floor(xs).astype(np.int64), 0, max(width - 2, 0))
    y0 = np.clip(np.floor(ys).astype(np.int64), 0, max(height - 2, 0))
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    top = data[y0, x0] * (1.0 - fx) + data[y0, x1] * fx
    bottom = data[y1, x0] * (1.0 - fx) + data[y1, x1] * fx
    return top * (1.0 - fy) + bottom * fy


def warp_affine(image: np.ndarray, matrix, size: tuple[int, int]) -> np.ndarray:
    """``out[y, x] = image(M^-1 (x, y))``: image (H, W, C) uint8, matrix (2, 3) source->output,
    size (width, height) -> (height, width, C) uint8, bilinear, zeros outside the source."""
    width, height = size
    inverse = invert_affine(matrix)
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float64)
    xs = inverse[0, 0] * grid_x + inverse[0, 1] * grid_y + inverse[0, 2]
    ys = inverse[1, 0] * grid_x + inverse[1, 1] * grid_y + inverse[1, 2]
    sampled = bilinear_sample(image, xs, ys, border="zero")
    return np.clip(np.rint(sampled), 0, 255).astype(np.uint8)


def resize_bilinear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, C) uint8 -> (height, width, C) uint8, bilinear without antialiasing, half-pixel
    centres, edge pixels replicated (OpenCV ``resize`` INTER_LINEAR, up to rounding)."""
    src_h, src_w = image.shape[:2]
    xs = (np.arange(width, dtype=np.float64) + 0.5) * (src_w / width) - 0.5
    ys = (np.arange(height, dtype=np.float64) + 0.5) * (src_h / height) - 0.5
    grid_x, grid_y = np.meshgrid(xs, ys)
    sampled = bilinear_sample(image, grid_x, grid_y, border="replicate")
    return np.clip(np.rint(sampled), 0, 255).astype(np.uint8)


def align_face(image: np.ndarray, keypoints, size: int = ARCFACE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Warp the face with five ``keypoints`` (5, 2) of ``image`` (H, W, 3) uint8 onto the template.

    Returns ``(crop (size, size, 3) uint8, M (2, 3))``. The template is defined at 112 px (the
    size of insightface's recognition models); for multiples of 112 it is scaled, for multiples of
    128 it is scaled by size / 128 and shifted right by 8 * size / 128 px (insightface's rule).
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.shape != (5, 2) or not np.isfinite(keypoints).all():
        raise EMOInputError(
            f"face keypoints: expected five finite (x, y) points, got shape {keypoints.shape}; "
            "pass the detector's keypoints (eyes, nose, mouth corners)."
        )
    if size % ARCFACE_SIZE == 0:
        template = ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)
    elif size % 128 == 0:
        template = ARCFACE_TEMPLATE * (size / 128) + np.array([8.0 * size / 128, 0.0])
    else:
        raise EMOInputError(
            f"face recognition model input size {size} px is not a multiple of 112 or 128; use "
            "an insightface recognition model such as glintr100.onnx (112 px)."
        )
    matrix = similarity_transform(keypoints, template)
    return warp_affine(image, matrix, (size, size)), matrix
