"""Former Hallo video loop; now ``emo_core.pipeline.hallo`` (the one pipeline run)."""

from .hallo import HalloClip, generate_hallo_clips  # noqa: F401
