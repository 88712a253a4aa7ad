"""No command ever writes over one of its inputs, however the path is spelled.

Every command calls :func:`refuse_output_over_inputs` first thing in ``run`` (before any import
of torch, before any work) with its outputs and its inputs as ``(option, path)`` pairs. A
refusal names both options and both paths.

What counts as "the same":

- an output that is the same file or folder as an input (``os.path.samefile``: symlinks, ``..``,
  ``./``, hard links, bind mounts; for outputs that do not exist yet, the resolved path);
- an existing output file that is one of the files inside an input folder (same inode: ``--out``
  naming the VAE weights inside ``--pretrained-models``, or a hard link to one);
- for a folder output (``prepare-data --out``, ``train``'s ``output_dir``, a demo cache): an input
  inside the part of the folder the command writes (``writes``: child-name prefixes, or ``None``
  for the whole folder).

Only ``os``/``stat``/``pathlib``: this runs before anything heavy is imported (issue 23, class 9).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import EMOInputError

# Files looked at inside one input folder: Hallo's pretrained_models/ holds a few dozen files; a
# folder of training videos may hold thousands, and an inode walk must stay a fraction of a second.
MAX_FOLDER_FILES = 20_000
Pair = tuple[str, "os.PathLike | str | None"]


def _clean(pairs: Iterable[Pair]) -> list[tuple[str, Path]]:
    return [(option, Path(os.path.expanduser(str(path)))) for option, path in pairs
            if path is not None and str(path) != ""]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except (OSError, ValueError):  # missing, a loop, an unreadable folder above it
        return None
    return info.st_dev, info.st_ino


def _resolved(path: Path) -> Path:
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError, RuntimeError):
        return Path(os.path.abspath(path))


def _inside(child: Path, folder: Path) -> bool:
    return child == folder or folder in child.parents


def _folder_files(folder: Path) -> dict[tuple[int, int], Path]:
    """Inode -> file, for the regular files under ``folder`` (symlinked folders followed once)."""
    found: dict[tuple[int, int], Path] = {}
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        here = _identity(Path(root))
        if here is None or here in seen:
            dirs[:] = []
            continue
        seen.add(here)
        for name in files:
            path = Path(root) / name
            try:
                info = path.stat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found[(info.st_dev, info.st_ino)] = path
            if len(found) >= MAX_FOLDER_FILES:
                return found
    return found


def _refuse(out_option: str, out: Path, in_option: str, source: Path, how: str) -> EMOInputError:
    return EMOInputError(
        f"{out_option} {str(out)!r} {how} {in_option} {str(source)!r}, an input of this command; "
        f"writing it would destroy that input: choose another {out_option}")


def refuse_output_over_inputs(outputs: Iterable[Pair], inputs: Iterable[Pair],
                              folder_outputs: Iterable[tuple[str, object, tuple | None]] = ()
                              ) -> None:
    """Raise :class:`EMOInputError` when an output would write over an input (see module doc).

    ``outputs``: ``(option, path)`` of files or folders the command writes (replaces).
    ``inputs``: ``(option, path)`` of files or folders it reads.
    ``folder_outputs``: ``(option, folder, writes)``: folders the command writes into; ``writes``
    = child-name prefixes it creates or replaces (``("step-", ".step-")``), None = anything.
    """
    inputs = _clean(inputs)
    for out_option, out in _clean(outputs):
        out_id = _identity(out)
        out_real = _resolved(out)
        for in_option, source in inputs:
            source_id = _identity(source)
            if (out_id is not None and out_id == source_id) or out_real == _resolved(source):
                raise _refuse(out_option, out, in_option, source, "is the same folder as"
                              if out.is_dir() else "is the same file as")
            if out_id is not None and source_id is not None and Path(source).is_dir() \
                    and not out.is_dir() and out_id in _folder_files(source):
                raise _refuse(out_option, out, in_option, source, "is a file inside")
            if source_id is not None and out_id is not None and out.is_dir() \
                    and _inside(_resolved(source), out_real):
                raise _refuse(out_option, out, in_option, source, "is a folder that holds")
    for out_option, folder, writes in folder_outputs:
        if folder is None:
            continue
        folder = Path(os.path.expanduser(str(folder)))
        real = _resolved(folder)
        for in_option, source in inputs:
            source_real = _resolved(source)
            if not _inside(source_real, real):
                continue
            if source_real == real:  # a cache is read and written on purpose (writes given)
                if writes is None:
                    raise _refuse(out_option, folder, in_option, source, "is the same folder as")
                continue
            child = source_real.relative_to(real).parts[0]
            if writes is None or child.startswith(tuple(writes)):
                raise _refuse(out_option, folder, in_option, source,
                              f"writes {str(real / child)!r}, which holds")
