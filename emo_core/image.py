"""Image normalisation: every image that enters emo_core becomes ``(H, W, 3) uint8`` RGB here.

Accepted: numpy arrays or torch tensors shaped ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)``,
``(H, W, 4)`` or a ComfyUI IMAGE batch of one ``(1, H, W, C)``; dtype uint8, uint16, bool or float
in 0..1. RGBA is composited over white: transparent regions of cut-out portraits often hold
undefined (black or garbage) RGB values, and a plain white background is what a face detector and
the diffusion model handle best.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import EMOInputError

logger = logging.getLogger(__name__)

# Float images may carry tiny overshoots from resampling; anything beyond this is a 0..255 mistake.
_FLOAT_TOLERANCE = 1e-3
_BACKGROUND = 255.0  # RGBA is composited over white
# Image files above this many pixels are refused before decoding (a 60000x60000 PNG header or a
# zlib bomb would need gigabytes). 80 MP covers every phone and DSLR photo up to 10000x8000;
# EMO crops the face to 512 px anyway. Raise it with the environment variable below.
MAX_IMAGE_PIXELS = 80_000_000
MAX_PIXELS_ENV = "EMO_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The pixel limit for image files: ``$EMO_MAX_IMAGE_PIXELS`` or :data:`MAX_IMAGE_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_IMAGE_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        raise EMOInputError(f"{MAX_PIXELS_ENV}={text!r} is not a number of pixels; set it to "
                            "e.g. 200000000 or unset it") from None
    if value < 1:
        raise EMOInputError(f"{MAX_PIXELS_ENV}={text!r} must be a positive number of pixels")
    return value


def _as_numpy(image, name: str) -> np.ndarray:
    """numpy or torch -> numpy array (torch tensors are detached and moved to the CPU)."""
    if isinstance(image, np.ndarray):
        return image
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # torch.Tensor without importing torch
        tensor = image.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()  # bfloat16 / float16 have no (or lossy) numpy equivalents
        return tensor.numpy()
    if isinstance(image, Image.Image):
        return np.asarray(image)
    raise EMOInputError(
        f"{name}: expected a numpy array or torch tensor, got {type(image).__name__}; "
        "pass the image as an array shaped (H, W, 3)."
    )


def _to_hwc(array: np.ndarray, name: str) -> np.ndarray:
    """Any accepted layout -> ``(H, W, C)`` with C in {1, 3, 4}."""
    shape = tuple(array.shape)
    if array.ndim == 4:
        if shape[0] != 1:
            raise EMOInputError(
                f"{name}: got a batch of {shape[0]} images {shape}; pass one image "
                "(select a single frame, e.g. image[0])."
            )
        array = array[0]
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or min(array.shape[:2]) < 1:
        hint = ""
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] > 4:
            hint = " It looks channel-first; transpose it to (H, W, C)."
        raise EMOInputError(
            f"{name}: unsupported image shape {shape}; expected (H, W), (H, W, 1), (H, W, 3), "
            f"(H, W, 4) or (1, H, W, C).{hint}"
        )
    return array


def _to_float01(array: np.ndarray, name: str) -> np.ndarray:
    """dtype -> float32 in 0..1 (rejects float images that are clearly 0..255 or contain NaN)."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise EMOInputError(f"{name}: image contains NaN or infinite values; fix its source.")
        low, high = float(values.min()), float(values.max())
        if low < -_FLOAT_TOLERANCE or high > 1.0 + _FLOAT_TOLERANCE:
            raise EMOInputError(
                f"{name}: float image values span {low:.3g}..{high:.3g}, expected 0..1; "
                "divide 0..255 images by 255 or pass them as uint8."
            )
        return np.clip(values, 0.0, 1.0)
    raise EMOInputError(
        f"{name}: unsupported image dtype {array.dtype}; use uint8, uint16, bool or float 0..1."
    )


def to_rgb_uint8(image, name: str = "image") -> np.ndarray:
    """Normalise any accepted image to RGB uint8.

    image: numpy / torch, (H, W) | (H, W, C) | (1, H, W, C), C in {1, 3, 4}
    returns: (H, W, 3) uint8, C-contiguous (MediaPipe and PIL need contiguous buffers).
    ``name`` is used in error messages so callers can say which input was wrong.
    """
    array = _to_hwc(_as_numpy(image, name), name)
    if array.dtype == np.uint8 and array.shape[2] == 3:
        return np.ascontiguousarray(array)
    values = _to_float01(array, name)
    channels = values.shape[2]
    if channels == 1:
        values = np.repeat(values, 3, axis=2)
    elif channels == 4:
        alpha = values[:, :, 3:4]
        values = values[:, :, :3] * alpha + (_BACKGROUND / 255.0) * (1.0 - alpha)
    return np.ascontiguousarray(np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8))


def _pil_to_array(picture: Image.Image) -> np.ndarray:
    """PIL image of any mode -> array that ``to_rgb_uint8`` accepts (alpha kept for compositing)."""
    if picture.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit / float greyscale: PIL's convert("RGB") would clip at 255 (and turn a
        # float TIFF in 0..1 black) instead of scaling.
        values = np.nan_to_num(np.asarray(picture, dtype=np.float32), nan=0.0)
        peak = float(values.max()) if values.size else 0.0
        if picture.mode != "F" or peak > 1.0 + _FLOAT_TOLERANCE:
            values /= 65535.0 if peak > 255 else 255.0
        return np.clip(values, 0.0, 1.0, out=values)
    has_alpha = picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info
    if not has_alpha:
        return np.asarray(picture.convert("RGB"))
    # Alpha composited onto the background in PIL, in uint8: the float path of to_rgb_uint8
    # held about 12 full-size float copies (1.2 GB more for a 25-megapixel RGBA PNG, issue 23);
    # this holds the decoded picture plus two uint8 RGB planes. Same result to +-1 level.
    rgba = picture.convert("RGBA")
    background = Image.new("RGB", rgba.size, (int(_BACKGROUND),) * 3)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return np.asarray(background)


def _too_large(path: Path, size: tuple[int, int] | None, limit: int) -> EMOInputError:
    dims = f"is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else "has too many pixels"
    return EMOInputError(
        f"image file {str(path)!r} {dims}, more than the limit of {limit:,} (or is a decompression "
        f"bomb); resize the photo (the face is cropped to 512 px anyway), or raise the limit by "
        f"setting the environment variable {MAX_PIXELS_ENV}")


def check_image_file(path) -> tuple[int, int]:
    """``(width, height)`` from the file header (nothing decoded): the file must exist, be an
    image PIL can identify, and be within :func:`max_image_pixels`. For preflight checks."""
    path = Path(path)
    if not path.is_file():
        raise EMOInputError(f"image file {str(path)!r} does not exist; check the path.")
    limit = max_image_pixels()
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as picture:
                size = picture.size
    except Image.DecompressionBombError as error:
        raise _too_large(path, None, limit) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise EMOInputError(f"image file {str(path)!r} could not be read ({error}); use a PNG, "
                            "JPEG or WebP image.") from error
    if size[0] * size[1] > limit:
        raise _too_large(path, size, limit)
    return size


def load_image_file(path) -> np.ndarray:
    """Read an image file with PIL, apply its EXIF orientation -> (H, W, 3) uint8 RGB.

    Files above :func:`max_image_pixels` are refused from their header, before decoding."""
    path = Path(path)
    check_image_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked above
            with Image.open(path) as picture:
                picture = ImageOps.exif_transpose(picture)  # phone photos store rotation in EXIF
                array = _pil_to_array(picture)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError,
            Image.DecompressionBombError) as error:
        raise EMOInputError(
            f"image file {str(path)!r} could not be read ({error}); "
            "use a PNG, JPEG or WebP image."
        ) from error
    logger.debug("loaded %s: %s", path, array.shape)
    return to_rgb_uint8(array, name=f"image file {str(path)!r}")


def to_rgb_frames(images, name: str = "images") -> list[np.ndarray]:
    """A batch of frames -> list of (H, W, 3) uint8, all the same size.

    images: (B, H, W, C) array / tensor (a ComfyUI IMAGE batch), one (H, W[, C]) image, or a
    list / tuple of images.
    """
    if isinstance(images, (list, tuple)):
        frames = [to_rgb_uint8(image, name=f"{name}[{i}]") for i, image in enumerate(images)]
    elif getattr(images, "ndim", 0) == 4:
        frames = [to_rgb_uint8(images[i], name=f"{name}[{i}]") for i in range(images.shape[0])]
    else:
        frames = [to_rgb_uint8(images, name=name)]
    if not frames:
        raise EMOInputError(f"{name}: no images given; pass at least one image.")
    sizes = sorted({frame.shape[:2] for frame in frames})
    if len(sizes) > 1:
        raise EMOInputError(
            f"{name}: frames have different sizes {sizes[:4]}; resize them to one size."
        )
    return frames
