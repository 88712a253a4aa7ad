"""Output paths checked before any model runs: a run that cannot write its result should fail in
the first second, not after the whole generation.

``check_output_path`` refuses a path whose folder is a file, a symlink loop, an existing folder or
device at the path, a system folder (``/dev``, ``/proc``, ``/sys``), a name too long for the
temporary file the writers use, and a folder where no file can be created (probed by creating and
removing the writers' own kind of temporary file). Missing folders are fine: writers create them.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import EMOInputError

# Pseudo file systems: writing a video there is always a mistake (and /dev/full fails on write).
SYSTEM_FOLDERS = (Path("/dev"), Path("/proc"), Path("/sys"))
# ...except the shared-memory tmpfs, an ordinary writable folder (probed like any other).
WRITABLE_SYSTEM_FOLDERS = (Path("/dev/shm"),)
_TEMP_SUFFIX = ".mp4.part"  # what emo_core.pipeline.video.Mp4Writer writes before the rename


def _refuse(what: str, path: Path, problem: str) -> EMOInputError:
    return EMOInputError(f"{what} {str(path)!r} {problem}; choose another output path")


def _resolve(path: Path, what: str) -> Path:
    try:
        return Path(os.path.realpath(path, strict=False))
    except (OSError, RuntimeError) as error:  # symlink loops (ELOOP), unreadable parts
        raise _refuse(what, path, f"cannot be resolved ({error})") from None


def _in_system_folder(resolved: Path) -> bool:
    def under(folders):
        return any(resolved == f or f in resolved.parents for f in folders)
    return under(SYSTEM_FOLDERS) and not under(WRITABLE_SYSTEM_FOLDERS)


def _existing_ancestor(path: Path, what: str) -> Path:
    """The nearest existing ancestor of ``path``; it must be a folder (``afile/out.mp4``)."""
    for parent in path.parents:
        if not os.path.lexists(parent):
            continue
        try:
            info = parent.stat()
        except OSError as error:  # ELOOP, EACCES, ENOTDIR, a dangling symlink (ENOENT)
            raise _refuse(what, path, f"has an unusable folder {str(parent)!r} ({error.strerror})"
                          ) from None
        if not stat.S_ISDIR(info.st_mode):
            raise _refuse(what, path, f"is inside {str(parent)!r}, which is a file, not a folder")
        return parent
    raise _refuse(what, path, "has no existing folder above it")


def check_output_path(path, suffix: str | None = ".mp4", what: str = "output") -> Path:
    """Raise ``EMOInputError`` unless a file can be written at ``path``; returns it as a Path.

    ``suffix``: required file suffix (case-insensitive), or None for any. Creates nothing that
    stays: the probe file is removed at once, missing folders are not created.
    """
    path = Path(path).expanduser()
    if suffix and path.name.lower() == suffix:  # "dir/.mp4": a hidden file with no suffix
        raise _refuse(what, path, f"has no file name before {suffix} (a name such as "
                      f"{str(path.parent / ('video' + suffix))!r})")
    if suffix and path.suffix.lower() != suffix:
        raise _refuse(what, path, f"must end in {suffix}")
    if os.path.lexists(path):
        try:
            info = path.stat()
        except OSError as error:  # a symlink loop or a dangling link
            raise _refuse(what, path, f"is a broken or looping symlink ({error.strerror})"
                          ) from None
        if stat.S_ISDIR(info.st_mode):
            raise _refuse(what, path, "is a folder; give a file name")
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(what, path, "exists and is not a regular file (a device or pipe)")
    resolved = _resolve(path, what)
    if _in_system_folder(resolved):
        raise _refuse(what, path, "is in a system folder (/dev, /proc, /sys)")
    # os.fsencode: the bytes the file system gets (a non-ASCII name under LC_ALL=C arrives as
    # surrogate escapes, which str.encode() refuses)
    if len(os.fsencode(f".{path.stem}.12345678{_TEMP_SUFFIX}")) > 255:
        raise _refuse(what, path, "has a file name too long for this file system")
    parent = _existing_ancestor(path, what)
    if parent != path.parent:  # folders will be created: they must be creatable (probed:
        try:  # permissions alone miss read-only mounts, immutable folders and root's rights)
            os.rmdir(tempfile.mkdtemp(prefix=".emo-probe.", dir=parent))
        except OSError as error:
            raise _refuse(what, path, f"needs new folders inside {str(parent)!r}, which refuses "
                          f"them ({error.strerror})") from None
        return path
    _probe(path, what)
    return path


def _probe(path: Path, what: str) -> None:
    """Create and remove the writer's kind of temporary file next to ``path``."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=_TEMP_SUFFIX,
                                    dir=path.parent)
    except OSError as error:
        raise _refuse(what, path, f"cannot be created in {str(path.parent)!r} "
                      f"({error.strerror})") from None
    os.close(fd)
    os.unlink(name)


def check_output_folder(path, what: str = "output folder") -> Path:
    """Raise ``EMOInputError`` unless files can be written in folder ``path`` (existing or to be
    created): not a file, not under a file or a system folder, and a folder can be created in
    its nearest existing folder (probed: read-only and immutable folders, /proc, a full quota).
    Creates nothing that stays."""
    path = Path(path).expanduser()
    if os.path.lexists(path):
        try:
            info = path.stat()
        except OSError as error:
            raise _refuse(what, path, f"is a broken or looping symlink ({error.strerror})"
                          ) from None
        if not stat.S_ISDIR(info.st_mode):
            raise _refuse(what, path, "is a file, not a folder")
    resolved = _resolve(path, what)
    if _in_system_folder(resolved):
        raise _refuse(what, path, "is in a system folder (/dev, /proc, /sys)")
    parent = path if os.path.isdir(path) else _existing_ancestor(path, what)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".emo-probe.", dir=parent))
    except OSError as error:
        raise _refuse(what, path, f"cannot be written: {str(parent)!r} refuses new files "
                      f"({error.strerror})") from None
    return path
