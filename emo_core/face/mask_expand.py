"""The face-locator mask's ``expand`` parameter: one meaning, default, range and help text.

Kept free of heavy imports (numpy, MediaPipe) so the CLI parser and node schemas can read it
without loading the face front-ends.
"""

import math

from ..errors import EMOInputError

DEFAULT_MASK_EXPAND = 0.25
MAX_MASK_EXPAND = 2.0  # 5x the box on each axis: more than any crop holds
MASK_EXPAND_HELP = (
    "Grow the detected face box by this fraction of its size on every side (0 = the box itself; "
    f"default {DEFAULT_MASK_EXPAND}: 1.5x wider and taller, room for head motion). Larger allows "
    "more head motion but loosens control over the face position."
)


def check_mask_expand(expand_ratio, name: str = "expand_ratio") -> float:
    """``expand_ratio`` as a float in ``0..MAX_MASK_EXPAND``, else EMOInputError naming ``name``."""
    value = float(expand_ratio) if isinstance(expand_ratio, (int, float)) else math.nan
    if isinstance(expand_ratio, bool) or not (math.isfinite(value)
                                              and 0.0 <= value <= MAX_MASK_EXPAND):
        raise EMOInputError(
            f"{name}={expand_ratio!r} is invalid; use a fraction of the face box added on "
            f"every side, 0..{MAX_MASK_EXPAND:g} (0 = the detected box, default "
            f"{DEFAULT_MASK_EXPAND} = room for head motion)."
        )
    return value
