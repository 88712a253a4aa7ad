"""Checks on untrusted weight files before anything big is allocated or built.

A config read from a file (EMO ``emo_config`` metadata, a wav2vec2 ``config.json``) is bounded
first: JSON size and nesting, every number finite, every integer within ``0..MAX_CONFIG_INT``,
lists short. The model it describes is then built on the ``meta`` device (shapes only, no memory)
and its element count compared with a hard limit and with what the file holds. Tensor dtypes are
read from the safetensors header; loaded tensors are checked for NaN / inf.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping

import torch

from ..errors import CheckpointError

MAX_CONFIG_CHARS = 1_000_000  # real configs are a few kB
MAX_CONFIG_DEPTH = 8  # EMO configs nest 3 levels (component -> unet -> list)
MAX_CONFIG_INT = 65_536  # channels, tokens, heads, layers, vocab: SD1.5's largest is 1280
MAX_LIST = 256
# Largest model any loader here builds: EMO on SD1.5 is ~2.2e9 elements; 4x headroom.
MAX_ELEMENTS = 10_000_000_000
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
_TORCH_NAMES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32",
                torch.float64: "F64"}


def parse_config_json(text: str, what: str, hint: str) -> object:
    """JSON text -> value; too long, too deep or invalid -> ``CheckpointError`` naming ``what``."""
    if len(text) > MAX_CONFIG_CHARS:
        raise CheckpointError(f"{what} is {len(text):,} characters long, more than any real "
                              f"config ({MAX_CONFIG_CHARS:,}); the file is damaged: {hint}")
    depth = _max_bracket_depth(text)
    if depth > MAX_CONFIG_DEPTH:
        raise CheckpointError(f"{what} nests {depth} levels deep (at most {MAX_CONFIG_DEPTH}); "
                              f"the file is damaged or hostile: {hint}")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as error:
        raise CheckpointError(f"{what} is not readable JSON ({error}): not valid JSON, the file "
                              f"is damaged: {hint}"
                              ) from None


def _max_bracket_depth(text: str) -> int:
    """Nesting depth of ``[``/``{`` outside strings (counted without recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def check_config_values(config: object, what: str, hint: str, path: str = "") -> None:
    """Every number finite, every int in ``0..MAX_CONFIG_INT``, lists <= ``MAX_LIST`` long."""
    if isinstance(config, Mapping):
        for key, value in config.items():
            check_config_values(value, what, hint, f"{path}.{key}" if path else str(key))
    elif isinstance(config, list):
        if len(config) > MAX_LIST:
            raise CheckpointError(f"{what}: {path} has {len(config)} entries (at most "
                                  f"{MAX_LIST}); {hint}")
        for index, value in enumerate(config):
            check_config_values(value, what, hint, f"{path}[{index}]")
    elif isinstance(config, bool) or config is None or isinstance(config, str):
        return
    elif isinstance(config, int):
        if not 0 <= config <= MAX_CONFIG_INT:
            raise CheckpointError(f"{what}: {path} = {config} is out of range (0..{MAX_CONFIG_INT}"
                                  f"); {hint}")
    elif isinstance(config, float) and (not math.isfinite(config) or abs(config) > 1e9):
        raise CheckpointError(f"{what}: {path} = {config} is not a usable number; {hint}")


def meta_element_count(build: Callable[[], torch.nn.Module], what: str, hint: str,
                       kind: str = "model") -> int:
    """Build a model on the meta device (no memory) and count its parameter + buffer elements.

    Any error while building means the config does not describe a valid model."""
    try:
        with torch.device("meta"):
            model = build()
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure = an invalid config, said plainly
        raise CheckpointError(f"{what} does not describe a valid {kind} ({type(error).__name__}: "
                              f"{_first_line(error)}); {hint}") from None
    count = sum(t.numel() for t in model.state_dict().values())
    if count > MAX_ELEMENTS:
        raise CheckpointError(f"{what} describes a model of {count:,} weights, above the limit "
                              f"of {MAX_ELEMENTS:,}; {hint}")
    return count


def header_dtypes(handle) -> dict[str, str]:
    """``{name: "F32" | "I8" | ...}`` from an open ``safe_open`` handle (reads no data)."""
    return {key: handle.get_slice(key).get_dtype() for key in handle.keys()}  # noqa: SIM118


def check_float_dtypes(expected: Mapping[str, torch.Tensor], found: Mapping[str, str | torch.dtype],
                       what: str, hint: str) -> None:
    """Tensors the model keeps in floating point must be stored in floating point."""
    bad = []
    for key, tensor in expected.items():
        if key not in found or not tensor.is_floating_point():
            continue
        dtype = found[key]
        name = _TORCH_NAMES.get(dtype, str(dtype)) if isinstance(dtype, torch.dtype) else dtype
        if name not in FLOAT_DTYPES:
            bad.append(f"{key} ({name})")
    if bad:
        raise CheckpointError(f"{what}: {len(bad)} weights are not floating point (first: "
                              f"{', '.join(bad[:3])}); weights must be F16, BF16 or F32: {hint}")


_FINITE_CHUNK = 1 << 22  # elements per isfinite call: its temporaries stay a few MB


def is_finite(tensor: torch.Tensor) -> bool:
    """No NaN / inf in ``tensor``. The sum of a chunk is NaN or inf when any element is, and
    costs no temporary of the chunk's size (``isfinite`` allocates one per call; the loaders
    call this on every tensor between their reads, and those short-lived buffers fragmented
    the heap by ~100 MB at full Hallo size). A sum that overflows, with every element finite,
    is settled by the exact elementwise check."""
    if not tensor.is_floating_point():
        return True
    flat = tensor.reshape(-1)
    return all(bool(torch.isfinite(part.sum())) or bool(torch.isfinite(part).all())
               for part in flat.split(_FINITE_CHUNK))


def check_finite(tensors: Mapping[str, torch.Tensor], what: str, hint: str) -> None:
    """Refuse NaN / inf in floating-point weights (they turn every output frame into NaN)."""
    bad = [key for key, tensor in tensors.items() if not is_finite(tensor)]
    if bad:
        raise CheckpointError(f"{what}: {len(bad)} weights contain NaN or infinite values "
                              f"(first: {', '.join(bad[:3])}); the file is damaged: {hint}")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__
