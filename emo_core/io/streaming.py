"""Write and read ``.safetensors`` one tensor at a time, so memory stays near one tensor.

``safetensors.torch.save_file`` first turns every tensor into ``bytes`` (a full copy of the
model) and ``load_file`` returns every tensor at once; for the 9.7 GB Hallo model in fp32 that
is what pushed conversion to ~11 GB and loading to ~15 GB. The format is simple (8-byte
little-endian header length, a JSON header ``{name: {dtype, shape, data_offsets}}`` plus
``__metadata__``, padded with spaces to 8 bytes, then the raw data), so it is written here
directly: the header first (shapes and dtypes are known without reading data), then each
tensor's bytes straight from its storage (a memory map for ``net.pth``). Reading allocates each
tensor and fills it with plain ``readinto`` calls (no memory map: mapped pages would count in
the process's resident memory for as long as the file stays open). Files written here are read
back by ``safetensors`` itself in the tests.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError, OutputWriteError

# torch dtype <-> safetensors header name (the subset weight files use).
_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}
_DTYPES = {name: dtype for dtype, name in _NAMES.items()}
_CHUNK = 64 << 20  # bytes per read/write call: large enough to be fast, small for the kernel
_CAST_CHUNK = 8 << 20  # bytes of the reused buffer a tensor is read through when converted
MAX_HEADER = 100_000_000  # safetensors' own limit


def safetensors_dtype_name(dtype: torch.dtype) -> str | None:
    """``"F16"`` etc., or ``None`` for a dtype safetensors files here never hold (complex)."""
    return _NAMES.get(dtype)


def _header(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> tuple[bytes,
                                                                                      list[str]]:
    # Widest dtypes first, as safetensors orders them: every tensor then starts at an offset
    # aligned to its element size, which memory-mapping readers (ComfyUI's) rely on.
    order = sorted(tensors, key=lambda k: -tensors[k].element_size())
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name in order:
        tensor = tensors[name]
        dtype = _NAMES.get(tensor.dtype)
        if dtype is None:
            raise CheckpointError(f"tensor {name!r} has dtype {tensor.dtype}, which a weight "
                                  "file cannot store; weights must be float or integer")
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": dtype, "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, order


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes without a copy when it is a contiguous CPU tensor (one copy else)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")


def write_tensors(handle, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
                  check: Callable[[str, torch.Tensor], None] | None = None) -> int:
    """Write ``tensors`` as safetensors to an open binary ``handle``; returns bytes written.

    ``check(name, tensor)`` runs on each tensor just before its bytes are written (e.g. a
    NaN check): one pass over the data, and a refusal stops the write."""
    head, order = _header(tensors, metadata)
    handle.write(head)
    written = len(head)
    for name in order:
        tensor = tensors[name]
        if check is not None:
            check(name, tensor)
        data = _tensor_bytes(tensor)
        for start in range(0, len(data), _CHUNK):
            written += handle.write(data[start:start + _CHUNK])
        del data
    return written


def save_streaming_atomic(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike,
                          metadata: Mapping[str, str] | None = None,
                          check: Callable[[str, torch.Tensor], None] | None = None) -> Path:
    """:func:`write_tensors` to a temp file in ``path``'s folder, then rename over ``path``.

    A reader never sees a half-written file; on any error (a ``check`` refusal included) the
    temp file is removed and ``path`` is untouched."""
    from .safe_load import umask_mode  # safe_load imports this module: import lazily

    path = Path(path)
    meta = dict(metadata or {})
    if any(not isinstance(k, str) or not isinstance(v, str) for k, v in meta.items()):
        raise ValueError("safetensors metadata must be str -> str")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write_tensors(handle, tensors, meta, check)
        os.chmod(temp_name, umask_mode(0o666))  # mkstemp leaves 0600: follow the umask
        os.replace(temp_name, path)
    except BaseException as error:
        Path(temp_name).unlink(missing_ok=True)
        if isinstance(error, OSError):  # disk full, ulimit -f, read-only
            raise OutputWriteError(
                f"could not write {str(path)!r} ({error}); free disk space, raise the file-size "
                "limit (ulimit -f) or choose another output folder") from error
        raise
    return path


def read_header(path: Path) -> tuple[int, dict]:
    """``(data start, header dict)`` of a safetensors file (``__metadata__`` removed)."""
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        if not 0 < size <= MAX_HEADER:
            raise CheckpointError(f"{str(path)!r} has no valid safetensors header; it is "
                                  "truncated or corrupt: copy it again")
        header = json.loads(handle.read(size))
    header.pop("__metadata__", None)
    return 8 + size, header


def iter_tensors(path: str | os.PathLike, names: Callable[[str], bool] | None = None,
                 dtype: torch.dtype | None = None,
                 check: Callable[[str, torch.Tensor], None] | None = None,
                 ) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, tensor)`` for each tensor of a safetensors file, in file order, each in a
    fresh (aligned) CPU allocation; at most one tensor is held here at a time.

    ``dtype``: floating-point tensors stored in another dtype are converted WHILE reading,
    through one reused buffer of ``_CAST_CHUNK`` bytes: no full-size copy in the file's dtype
    is made and freed per tensor (for an fp16 file loaded in fp32 that transient was the size
    of the largest tensor, and the freed copies fragmented the heap). ``check(name, values)``
    runs on the values as stored (before any conversion), in pieces, e.g. a NaN check.

    The header is expected to have been validated (``safe_open``) before; a file shorter than
    its header says raises :class:`CheckpointError`."""
    path = Path(path)
    start, header = read_header(path)
    entries = sorted(header.items(), key=lambda item: item[1]["data_offsets"][0])
    scratch = None
    with open(path, "rb", buffering=0) as handle:
        for name, entry in entries:
            if names is not None and not names(name):
                continue
            stored = _DTYPES[entry["dtype"]]
            convert = dtype is not None and stored.is_floating_point and stored != dtype
            tensor = torch.empty(entry["shape"], dtype=dtype if convert else stored)
            begin, end = entry["data_offsets"]
            handle.seek(start + begin)
            if not convert:
                _read_exactly(handle, tensor, end - begin, path)
                if check is not None:
                    check(name, tensor)
                yield name, tensor
                continue
            if scratch is None:
                scratch = torch.empty(_CAST_CHUNK, dtype=torch.uint8)
            flat, step = tensor.reshape(-1), _CAST_CHUNK // stored.itemsize
            for first in range(0, flat.numel(), step):
                count = min(step, flat.numel() - first)
                part = scratch[:count * stored.itemsize]
                _read_exactly(handle, part, part.numel(), path)
                values = part.view(stored)
                if check is not None:
                    check(name, values)
                flat[first:first + count].copy_(values)
            yield name, tensor


def _read_exactly(handle, tensor: torch.Tensor, size: int, path: Path) -> None:
    if size == 0:
        return
    view = memoryview(tensor.reshape(-1).view(torch.uint8).numpy()).cast("B")
    done = 0
    while done < size:
        count = handle.readinto(view[done:min(size, done + _CHUNK)])
        if not count:
            raise CheckpointError(f"{str(path)!r} ends before its tensor data does; it is "
                                  "truncated: copy it again")
        done += count
