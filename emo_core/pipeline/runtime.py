"""Device and dtype choice shared by the CLI and hosts that do not inject their own."""

from __future__ import annotations

import functools
import logging
import platform

import torch

from ..errors import EMOInputError

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# CPU feature flags (/proc/cpuinfo) under which a half dtype runs in hardware; without them
# PyTorch emulates it through fp32 conversions: a full-size model in bf16 measured ~30x slower
# than fp32 on an AVX2 CPU. x86: AVX512-BF16 / AMX; Arm: the bf16 / half-precision extensions.
NATIVE_CPU_FLAGS = {torch.bfloat16: ("avx512_bf16", "amx_bf16", "bf16"),
                    torch.float16: ("avx512_fp16", "amx_fp16", "asimdhp", "fphp")}
_warned: set[torch.dtype] = set()


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo`` ``flags`` / ``Features``); empty where
    they cannot be read (then every half dtype counts as emulated)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_runs_natively(dtype: torch.dtype) -> bool:
    """Whether this CPU computes ``dtype`` in hardware (fp32/fp64 always)."""
    if dtype not in NATIVE_CPU_FLAGS:
        return True
    flags = cpu_flags()
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        flags = flags | {"bf16", "asimdhp"}  # Apple silicon: both in hardware, no /proc
    return any(flag in flags for flag in NATIVE_CPU_FLAGS[dtype])


def warn_if_emulated(dtype: torch.dtype, device: torch.device) -> None:
    """Warn once per dtype when an explicitly chosen dtype is emulated on this CPU."""
    if device.type != "cpu" or cpu_runs_natively(dtype) or dtype in _warned:
        return
    _warned.add(dtype)
    name = next(k for k, v in DTYPES.items() if v == dtype)
    logger.warning("%s on this CPU is emulated (no %s support): generation will be many times "
                   "slower than fp32 (about 30x measured for bf16); use fp32 (or auto) on this "
                   "machine", name, " / ".join(NATIVE_CPU_FLAGS[dtype][:2]).upper())


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
    """``auto`` -> fp16 on accelerators (half the memory, same quality for SD1.5), fp32 on CPU
    (never a dtype the CPU emulates); an explicit emulated choice is kept but warned about."""
    if name == "auto":
        return cpu_safe(torch.float16, device)
    try:
        dtype = DTYPES[name]
    except KeyError:
        raise EMOInputError(f"dtype must be auto, fp32, fp16 or bf16, got {name!r}") from None
    warn_if_emulated(dtype, device)
    return dtype


def cpu_safe(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """An automatic choice ``dtype`` for ``device``: fp32 on a CPU (exact; a half dtype is never
    faster there unless it runs in hardware, and is many times slower when emulated)."""
    return torch.float32 if device.type == "cpu" else dtype
