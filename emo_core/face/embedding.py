"""Face identity embedding as Hallo computes it: insightface ONNX models run with onnxruntime.

Hallo builds ``FaceAnalysis(name="", root=pretrained_models/face_analysis)`` with
``det_size=(640, 640)``: every ``*.onnx`` in ``face_analysis/models/`` is loaded (sorted by file
name, the first detector and the first recognizer win), SCRFD finds the faces, the LARGEST box
(area of x0, y0, x1, y1) is kept, its five keypoints align the face onto the ArcFace 112x112
template, and the recognizer's raw 512-d output (NOT unit-normalised) is the embedding Hallo's
``imageproj`` turns into tokens. Both networks get RGB input; the recognizer sees
``(x - 127.5) / 127.5`` unless the model normalises its input itself (old MXNet exports whose first
nodes are named Sub / Mul, detected as insightface does).

Hallo falls back to a zero embedding when no face is found; here ``embed`` raises ``NoFaceError``
and the caller decides (the lead's pipeline may use zeros to match Hallo).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import EMOInputError, NoFaceError
from ..image import to_rgb_uint8
from ..onnx_session import open_session
from .align import align_face
from .onnx_graph import first_node_names
from .scrfd import DET_SIZE, DET_THRESHOLD, Detection, detect_faces

logger = logging.getLogger(__name__)

EMBEDDING_DIM = 512
HF_SOURCE = "the Hugging Face repository fudan-generative-ai/hallo, folder face_analysis/models"
_HINT = (
    "Put the insightface ONNX files (a detector such as scrfd_10g_bnkps.onnx and a recognizer such "
    f"as glintr100.onnx) there; they are in {HF_SOURCE}. In ComfyUI use models/insightface/ (or a "
    "pack folder under models/insightface/models/); with Hallo's own layout pass "
    "pretrained_models/face_analysis/ or its models/ folder."
)


def _onnx_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.onnx") if p.is_file())


def model_folders(model_dir) -> list[Path]:
    """Folders that may hold the insightface ``*.onnx`` files for ``model_dir``, in search order.

    Accepted: the folder itself, Hallo's ``face_analysis`` root (files in ``models/``), or ComfyUI's
    ``models/insightface`` root (files in ``models/`` or a pack folder ``models/<name>/``, sorted by
    name). Only folders that contain ``.onnx`` files are returned.
    """
    if model_dir is None:
        raise EMOInputError(f"face analysis model folder not given. {_HINT}")
    root = Path(model_dir)
    if not root.is_dir():
        raise EMOInputError(f"face analysis model folder {str(root)!r} does not exist. {_HINT}")
    candidates = [root, root / "models"]
    if (root / "models").is_dir():
        candidates += sorted(p for p in (root / "models").iterdir() if p.is_dir())
    folders = [folder for folder in candidates if _onnx_files(folder)]
    if not folders:
        raise EMOInputError(f"face analysis model folder {str(root)!r} has no .onnx files. {_HINT}")
    return folders


def _classify(folder: Path, providers) -> dict:
    """{"detection": (session, path), "recognition": (session, path)} for the first file (sorted by
    name) of each task in ``folder``, as insightface's FaceAnalysis picks them."""
    found: dict = {}
    for path in _onnx_files(folder):
        session = open_session(path, "face analysis model", HF_SOURCE, providers)
        task = _task(session)
        if task is not None and task not in found:
            found[task] = (session, path)
    return found


def _task(session) -> str | None:
    """insightface's model_zoo rule: >= 5 outputs -> detection; a square input of >= 112 px (not
    the 192 / 96 px landmark and attribute models) with one input and one output -> recognition."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(outputs) >= 5:
        return "detection"
    shape = inputs[0].shape
    if len(inputs) != 1 or len(outputs) != 1 or len(shape) != 4:
        return None
    height, width = shape[2], shape[3]
    if isinstance(height, int) and height == width and height >= 112 and height % 16 == 0 \
            and height not in (192, 96):
        return "recognition"
    return None


def _has_own_normalisation(path: Path) -> bool:
    """True for MXNet-converted recognizers that subtract / scale inside the graph."""
    names = first_node_names(path, 8)
    has_sub = any(n.startswith(("Sub", "_minus")) for n in names)
    has_mul = any(n.startswith(("Mul", "_mul")) for n in names)
    return has_sub and has_mul


class FaceEmbedder:
    """Detector + recognizer sessions from an insightface model folder (see ``model_folders``).

    ``embed(image)`` -> (512,) float32 raw identity embedding of the largest face.
    """

    def __init__(self, model_dir, providers=None, det_size=DET_SIZE, det_threshold=DET_THRESHOLD):
        self.det_size, self.det_threshold = tuple(det_size), float(det_threshold)
        folders = model_folders(model_dir)
        for folder in folders:  # e.g. ComfyUI: a lone inswapper_128.onnx beside models/antelopev2/
            found = _classify(folder, providers)
            if len(found) == 2:
                break
        else:
            missing = [task for task in ("detection", "recognition") if task not in found]
            names = {"detection": "detector", "recognition": "recognizer"}
            raise EMOInputError(
                f"face analysis model folder {str(folders[-1])!r} has no "
                f"{' and no '.join(names[m] for m in missing)} ONNX model. {_HINT}"
            )
        self.folder = folder
        self.detector, self.detector_path = found["detection"]
        self.recognizer, self.recognizer_path = found["recognition"]
        own = _has_own_normalisation(self.recognizer_path)
        self.input_mean, self.input_std = (0.0, 1.0) if own else (127.5, 127.5)
        logger.info("face embedding: detector %s, recognizer %s",
                    self.detector_path.name, self.recognizer_path.name)

    def detect(self, image) -> list[Detection]:
        """All faces in ``image`` (any image ``to_rgb_uint8`` accepts), best score first."""
        rgb = to_rgb_uint8(image, "reference image")
        return detect_faces(self.detector, rgb, self.det_size, self.det_threshold)

    def largest_face(self, image) -> Detection:
        """The face with the largest box, as Hallo picks it; NoFaceError when there is none."""
        faces = self.detect(image)
        if not faces:
            raise NoFaceError(
                "reference image: the insightface detector found no face (score >= "
                f"{self.det_threshold}); use a photo with a clearly visible, roughly frontal face."
            )
        return max(faces, key=lambda face: face.area)  # first of equal areas, like a stable sort

    def embed_aligned(self, crop: np.ndarray) -> np.ndarray:
        """(S, S, 3) uint8 RGB aligned crop -> (512,) float32 raw recognizer output."""
        # OpenCV's blobFromImage order: subtract the mean, then multiply by 1 / std (float32)
        blob = (crop.astype(np.float32) - self.input_mean) * np.float32(1.0 / self.input_std)
        blob = blob.transpose(2, 0, 1)[None].copy()
        session = self.recognizer
        output = session.run(None, {session.get_inputs()[0].name: blob})[0]
        return np.asarray(output, dtype=np.float32).reshape(-1)

    def embed(self, image, zeros_if_no_face: bool = False) -> np.ndarray:
        """(H, W, 3) uint8 RGB image -> (512,) float32 embedding of its largest face (raw).
        Pass the reference at its original resolution: Hallo runs insightface on the file as loaded.

        No face: NoFaceError, or with ``zeros_if_no_face`` a zero vector and a warning (Hallo's
        fallback).
        """
        rgb = to_rgb_uint8(image, "reference image")
        try:
            face = self.largest_face(rgb)
        except NoFaceError:
            if not zeros_if_no_face:
                raise
            logger.warning("face embedding: no face found; using a zero embedding as Hallo does")
            return np.zeros(EMBEDDING_DIM, dtype=np.float32)
        size = self.recognizer.get_inputs()[0].shape[2]
        crop, _ = align_face(rgb, face.keypoints, size)
        return self.embed_aligned(crop)
