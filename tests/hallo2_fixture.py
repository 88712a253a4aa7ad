"""Where the Hallo2 golden fixture set lives: the one place tests resolve it.

``$EMO_HALLO2_FIXTURE`` names any folder of the ``hallo2_tiny`` layout (see its README); without
it the in-repo copy ``tests/fixtures/hallo2_tiny`` (``tests/fixture_sets.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = (REPO_ROOT / "tests/fixtures/hallo2_tiny",)


def hallo2_fixture() -> Path:
    """The fixture folder (it may not exist: tests skip on a missing ``outputs.safetensors``)."""
    chosen = os.environ.get("EMO_HALLO2_FIXTURE")
    if chosen:
        return Path(chosen)
    return next((p for p in DEFAULTS if (p / "outputs.safetensors").is_file()), DEFAULTS[0])
