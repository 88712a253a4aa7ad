"""Where the tests find their fixture data: inside the repository, so a fresh clone tests alone.

Each golden set (a tiny random model in the original project's own file layout plus the tensors
its own code computed) lives under ``tests/fixtures/<name>/``; an environment variable may point
a test run at another set of the same layout (``EMO_HALLO_FIXTURE=/path/to/other_hallo_tiny``).
Single files (portrait, speech, MediaPipe models) are found by ``fixture_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
# Single files: the bundled samples the package ships (portrait, speech, MediaPipe models) and the
# test-only copies in tests/fixtures.
FILE_FOLDERS = (REPO_ROOT / "emo_core" / "samples", REPO_ROOT / "emo_core" / "samples" / "mediapipe",
                FIXTURES)
# name -> environment variable that overrides its folder
SETS = {
    "hallo_tiny": "EMO_HALLO_FIXTURE",
    "hallo2_tiny": "EMO_HALLO2_FIXTURE",
    "echomimic_tiny": "EMO_ECHOMIMIC_FIXTURE",
}


def fixture_set(name: str) -> Path:
    """Folder of the golden set ``name``: ``$<its variable>`` when set, else the bundled copy."""
    configured = os.environ.get(SETS[name])
    return Path(configured).expanduser() if configured else FIXTURES / name


HALLO_FIXTURE = fixture_set("hallo_tiny")
HALLO2_FIXTURE = fixture_set("hallo2_tiny")
ECHOMIMIC_FIXTURE = fixture_set("echomimic_tiny")


def fixture_path(name: str) -> Path:
    """Path of a single fixture file (``portrait_astronaut.png``) in the repository."""
    for folder in FILE_FOLDERS:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"fixture {name!r} not found in any of {FILE_FOLDERS}")
