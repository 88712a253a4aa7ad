"""onnxruntime sessions for the ONNX models a user supplies (insightface, MDX-Net vocal separation).

onnxruntime is imported lazily so the rest of emo_core works without it; CUDA is used when the
installed onnxruntime offers it (``onnxruntime-gpu``), else the CPU.
"""

from __future__ import annotations

from pathlib import Path

from .errors import EMOInputError


def import_onnxruntime():
    """The onnxruntime module, or an EMOInputError saying how to install it."""
    try:
        import onnxruntime
    except ImportError as error:
        raise EMOInputError(
            f"running ONNX models needs the 'onnxruntime' package, which could not be imported "
            f"({error}); install it with `pip install onnxruntime` (or onnxruntime-gpu)."
        ) from error
    return onnxruntime


def open_session(path: Path, what: str, where: str, providers=None):
    """InferenceSession for ``path``; ``what`` names the model and ``where`` says where to get it
    again in the error raised when onnxruntime cannot load the file."""
    ort = import_onnxruntime()
    if providers is None:
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types
        raise EMOInputError(
            f"{what} {str(path)!r} could not be loaded by onnxruntime ({error}); download it "
            f"again: {where}"
        ) from error
