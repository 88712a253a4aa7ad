"""Bring your own SD1.5: civit.ai checkpoints and LoRAs applied to EMO as weight deltas.

``apply_style_delta(models, source, strength_backbone, strength_reference)`` adds
``strength * (style - base)`` to the SD1.5 spatial weights of the Backbone and ReferenceNet.
Sources: :class:`CheckpointDeltaSource` (files, for the CLI) or the ComfyUI MODEL bridge in
``nodes/style_bridge.py``. Temporal, audio, speed and face-locator weights are never touched.
"""

from .deltas import ComponentReport, DeltaSource, StyleReport, apply_style_delta
from .lora import LoraFile, LoraLayer, load_lora, parse_lora
from .sources import CheckpointDeltaSource, UNetWeightFile

__all__ = [
    "ComponentReport", "DeltaSource", "StyleReport", "apply_style_delta", "LoraFile",
    "LoraLayer", "load_lora", "parse_lora", "CheckpointDeltaSource", "UNetWeightFile",
]
