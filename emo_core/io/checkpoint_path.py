"""Where an EMO checkpoint is and whether its header says it is one: torch-free, so that the
command line refuses a wrong ``--checkpoint`` in well under a second (issue 23, class 9).

:mod:`emo_core.io.emo_checkpoint` re-exports these names; the full header check (configs, shapes,
dtypes) stays there.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CheckpointError

EMO_FORMAT = "1"
FOLDER_FILE = "emo.safetensors"
INIT_HINT = (
    "create an EMO checkpoint with `python -m emo_core init-checkpoint --sd15 ... "
    "--motion-module ... --out emo.safetensors` (or `python -m emo_core demo-weights` for a "
    "tiny test bundle)"
)


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """``FILE.safetensors`` or ``DIR`` (holding ``emo.safetensors``) -> the file."""
    path = Path(path)
    if path.is_dir():
        path = path / FOLDER_FILE
    if not path.is_file():
        raise CheckpointError(
            f"EMO checkpoint {str(path)!r} not found; pass an .safetensors file or a folder "
            f"holding {FOLDER_FILE}; {INIT_HINT}"
        )
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(
            f"EMO checkpoint {str(path)!r} is a {path.suffix or 'suffix-less'} file; EMO "
            f"checkpoints are .safetensors files; {INIT_HINT}"
        )
    return path


def check_checkpoint_header(path: str | os.PathLike) -> Path:
    """The file resolves, its safetensors header parses and carries ``emo_config`` metadata.
    Reads the JSON header only (safetensors' numpy view: no torch import)."""
    from safetensors import safe_open

    file = resolve_checkpoint_path(path)
    try:
        with safe_open(str(file), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
    except Exception as error:  # safetensors raises its own error types for damaged headers
        raise CheckpointError(
            f"EMO checkpoint {str(file)!r} could not be read ({error}); it is truncated, "
            f"corrupt or not a safetensors file: copy it again, or {INIT_HINT}") from None
    if "emo_config" not in metadata:
        raise CheckpointError(f"{str(file)!r} is not an EMO checkpoint (no emo_config in its "
                              f"header); {INIT_HINT}")
    return file
