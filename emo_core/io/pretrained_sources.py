"""Reading the files of a downloaded ``pretrained_models/`` / ``pretrained_weights/`` folder,
shared by the converters (``hallo_sources``, ``cli/cmd_convert_echomimic``): find one of a
file's known names, read a JSON config as untrusted input. Each refusal names the file and
says what to do (``hint``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, EMOInputError
from .validate import check_config_values, parse_config_json


def find_file(root: Path, options: tuple[str, ...], what: str, hint: str) -> Path:
    """The first of ``options`` (paths under ``root``) that is a file."""
    for option in options:
        if (root / option).is_file():
            return root / option
    raise EMOInputError(f"{what} not found in {str(root)!r} (looked for {', '.join(options)}); "
                        f"{hint}")


def read_config(path: Path, what: str, hint: str) -> dict:
    """A JSON object from ``path``, bounded (size, depth, numbers) and decoded as UTF-8."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise EMOInputError(f"{what} {str(path)!r} cannot be read ({error.strerror or error}); "
                            f"{hint}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{what} {str(path)!r} is not UTF-8 text (byte {error.start}); "
                              f"JSON files are UTF-8: {hint}") from None
    value = parse_config_json(text, f"{what} {str(path)!r}", hint)
    if not isinstance(value, dict):
        raise CheckpointError(f"{what} {str(path)!r} holds a JSON {type(value).__name__}, not an "
                              f"object of settings; {hint}")
    check_config_values(value, f"{what} {str(path)!r}", hint)
    return value
