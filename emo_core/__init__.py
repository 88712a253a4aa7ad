"""EMO Portrait core: the EMO talking-head model, its conditioning front-ends and pipeline.

This package never imports ComfyUI; the node pack in ``nodes/`` is a thin layer on top of it.
"""

import logging

__version__ = "0.1.0"

logger = logging.getLogger("emo_core")
