"""Former Hallo run helpers; now ``emo_core.pipeline.hallo`` and the Hallo family."""

from .hallo import build_hallo_conditions, hallo_sampling, ignored_settings  # noqa: F401
