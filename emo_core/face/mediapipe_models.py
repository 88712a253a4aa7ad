"""Locating the MediaPipe model files and importing MediaPipe lazily.

MediaPipe is imported inside functions so the rest of emo_core (models, pipeline, speed curves)
works where MediaPipe is not installed. Only the Tasks API is used (MediaPipe >= 0.10.30 has no
``mediapipe.solutions``). Model files are read into memory and handed over as
``model_asset_buffer``: MediaPipe's own path handling fails on some non-ASCII / network paths.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import EMOInputError

logger = logging.getLogger(__name__)

_STORAGE = "https://storage.googleapis.com/mediapipe-models/"
MODEL_FILES = {
    "detector": (
        "blaze_face_short_range.tflite",
        _STORAGE
        + "face_detector/blaze_face_short_range/float16/latest/blaze_face_short_range.tflite",
    ),
    "landmarker": (
        "face_landmarker.task",
        _STORAGE + "face_landmarker/face_landmarker/float16/latest/face_landmarker.task",
    ),
}


def import_mediapipe():
    """Return ``(mediapipe, mediapipe.tasks.python.vision, BaseOptions)`` or raise EMOInputError."""
    try:
        import mediapipe
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as error:
        raise EMOInputError(
            f"face detection needs the 'mediapipe' package, which could not be imported ({error}); "
            "install it with `pip install mediapipe`, or pass your own face mask."
        ) from error
    return mediapipe, vision, BaseOptions


def model_file(model_dir, kind: str) -> Path:
    """Path of the MediaPipe model ``kind`` ("detector" | "landmarker") inside ``model_dir``.

    ``model_dir`` may also be the model file itself.
    """
    if kind not in MODEL_FILES:
        raise ValueError(f"kind must be one of {sorted(MODEL_FILES)}, got {kind!r}")
    file_name, url = MODEL_FILES[kind]
    if model_dir is None:
        raise EMOInputError(
            f"MediaPipe model folder not given; put {file_name} in a folder "
            f"(download it from {url}) and pass that folder."
        )
    path = Path(model_dir)
    candidate = path if path.is_file() and path.name == file_name else path / file_name
    if not candidate.is_file():
        raise EMOInputError(
            f"MediaPipe model folder {str(path)!r} has no {file_name}; "
            f"download it from {url} into that folder."
        )
    return candidate


def load_model_buffer(model_dir, kind: str) -> bytes:
    """Bytes of the model file (see ``model_file``)."""
    path = model_file(model_dir, kind)
    data = path.read_bytes()
    if not data:
        raise EMOInputError(
            f"MediaPipe model file {str(path)!r} is empty; download it again from "
            f"{MODEL_FILES[kind][1]}."
        )
    return data


def mp_image(mediapipe, rgb):
    """``(H, W, 3) uint8`` contiguous RGB -> ``mediapipe.Image`` (SRGB)."""
    return mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=rgb)
