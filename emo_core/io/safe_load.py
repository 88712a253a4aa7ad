"""Read weight files without ever running pickled code, and write them atomically.

``.safetensors`` files are read with safetensors. Legacy ``.ckpt/.pth/.bin/.pt`` files are read
with ``torch.load(weights_only=True)``, whose restricted unpickler only rebuilds tensors and plain
containers; a file that needs anything else is refused. There is deliberately no fallback to an
unrestricted load: a checkpoint from the internet is untrusted input.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ..errors import CheckpointError
from .streaming import save_streaming_atomic

logger = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES

# Keys under which trainers nest the real state dict (Lightning/LDM: "state_dict").
_NESTING_KEYS = ("state_dict",)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(
            f"weight file {str(path)!r} does not exist or is not a file; check the path "
            f"(expected one of {', '.join(WEIGHT_SUFFIXES)})"
        )
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise CheckpointError(
            f"weight file {str(path)!r} has suffix {path.suffix!r}; expected one of "
            f"{', '.join(WEIGHT_SUFFIXES)}"
        )


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Header metadata of a ``.safetensors`` file (``{}`` when it has none); reads no tensors."""
    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise _corrupt(path, error) from error


def read_safetensors_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` from the header of a ``.safetensors`` file, without reading tensor data."""
    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            # safe_open handles are not iterable; .keys() is their API.
            names = handle.keys()  # noqa: SIM118
            return {key: tuple(handle.get_slice(key).get_shape()) for key in names}
    except (SafetensorError, OSError, ValueError) as error:
        raise _corrupt(path, error) from error


def _corrupt(path: Path, error: Exception) -> CheckpointError:
    return CheckpointError(
        f"weight file {str(path)!r} could not be read ({error}); it is truncated or corrupt. "
        "Download or copy it again and check its size against the source."
    )


def _load_pickle(path: Path, mmap: bool = False) -> object:
    try:
        if mmap:
            try:
                return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as error:  # pre-1.6 (non-zip) files cannot be memory-mapped
                if "mmap" not in str(error):
                    raise
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # The restricted unpickler met a global it will not build (code, custom classes): the
        # file is not a plain tensor checkpoint. Refuse it; never retry without weights_only.
        if "weights_only" in str(error) or "Unsupported" in str(error):
            raise CheckpointError(
                f"weight file {str(path)!r} is not a plain tensor checkpoint: loading it would "
                "need to run Python code stored in the file, which EMO Portrait never does. "
                "Convert it to .safetensors with a tool you trust, or use the .safetensors "
                "release of the same model."
            ) from error
        raise _corrupt(path, error) from error
    except Exception as error:  # noqa: BLE001 - torch.load on garbage raises many types
        raise _corrupt(path, error) from error


def _tensors_only(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"weight file {str(path)!r} holds a {type(obj).__name__}, not a dictionary of "
            "tensors; expected a state dict checkpoint"
        )
    for key in _NESTING_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    dropped = len(obj) - len(tensors)
    if dropped:
        # Training bookkeeping (global_step, epoch, optimizer info) is not weights.
        logger.debug("%s: ignored %d non-tensor entries", path, dropped)
    if not tensors:
        raise CheckpointError(
            f"weight file {str(path)!r} contains no tensors; expected a model state dict"
        )
    return tensors


def load_state_dict(path: str | os.PathLike, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Read every tensor of a weight file onto the CPU.

    Returns ``{name: tensor}``; an LDM/Lightning ``{"state_dict": {...}}`` wrapper is removed and
    non-tensor entries are dropped. Raises :class:`CheckpointError` for a missing, truncated,
    corrupt or code-carrying file. ``mmap``: tensors of a (zip-format) pickle file stay in a
    memory map of the file and are read only when touched (a converter that streams them out
    then never holds the whole file in memory).
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        try:
            tensors = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise _corrupt(path, error) from error
        return _tensors_only(tensors, path)
    return _tensors_only(_load_pickle(path, mmap), path)


def save_safetensors_atomic(
    tensors: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``tensors`` to ``path`` as safetensors: temp file in the same folder, then rename.

    Streamed tensor by tensor (:mod:`.streaming`): memory stays near one tensor, not a full copy
    of the model. A reader never sees a half-written file; on any error the temp file is removed.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(
            f"output file {str(path)!r} must end in .safetensors (got {path.suffix!r})"
        )
    meta = dict(metadata or {})
    bad = [k for k, v in meta.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ValueError(f"safetensors metadata must be str -> str; offending keys: {bad[:5]}")
    save_streaming_atomic(tensors, path, meta)
    logger.info("wrote %s (%d tensors)", path, len(tensors))
    return path


def umask_mode(mode: int) -> int:
    """``mode`` with the process umask applied: what ``open()``/``mkdir()`` would have given."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def follow_umask(root: Path) -> None:
    """chmod ``root`` and everything under it as plain ``open``/``mkdir`` would have made them
    (third-party writers such as safetensors 0.8 and ``mkdtemp`` create 0600 / 0700)."""
    root = Path(root)
    for path in (root, *root.rglob("*")):
        if not path.is_symlink():
            path.chmod(umask_mode(0o777 if path.is_dir() else 0o666))


def metadata_json(value: object) -> str:
    """Serialise a config for safetensors metadata (sorted keys so files are reproducible)."""
    return json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(value: object) -> object:
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    raise TypeError(f"cannot store {type(value).__name__} in checkpoint metadata: {value!r}")
