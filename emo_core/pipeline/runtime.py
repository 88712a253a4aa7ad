"""Device and dtype choice shared by the CLI and hosts that do not inject their own."""

from __future__ import annotations

import torch

from ..errors import EMOInputError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, else mps, else cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EMOInputError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise EMOInputError(f"device must be auto, cpu, cuda[:N] or mps, got {name!r}")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` -> fp16 on accelerators (half the memory, same quality for SD1.5), fp32 on CPU."""
    if name == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    try:
        return DTYPES[name]
    except KeyError:
        raise EMOInputError(f"dtype must be auto, fp32, fp16 or bf16, got {name!r}") from None
