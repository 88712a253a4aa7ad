"""Style inputs of Load EMO Models: core MODELs ``style_model`` / ``base_model`` and strengths.

``style_schema_inputs()`` returns the extra schema inputs; ``apply_style_inputs(models,
**kwargs)`` applies them to freshly loaded ``EMOModels`` and returns the report text (also
logged), e.g.::

    style delta from style_model (SD15, 5 patched tensors) - base_model (SD15, 0 patched):
      backbone: strength 1, 5 tensors changed, max |delta| 0.0123, L2 0.456
      reference_net: strength 0.5, ...
"""

from __future__ import annotations

import logging

from emo_core.errors import EMOInputError
from emo_core.style import apply_style_delta

from .comfy_bridge import io
from .style_bridge import ModelDeltaSource, check_sd15_model

logger = logging.getLogger(__name__)

STYLE_INPUT_NAMES = ("style_model", "base_model", "style_strength", "style_strength_backbone",
                     "style_strength_reference")


def style_schema_inputs() -> list:
    """Optional inputs to append to EMOLoadModels' schema (names as in STYLE_INPUT_NAMES)."""
    return [
        io.Model.Input(
            "style_model", optional=True,
            tooltip="SD1.5 model to take the look from: Load Checkpoint (any civit.ai SD1.5 "
                    "checkpoint), optionally through Load LoRA. EMO gets style_strength x "
                    "(style_model - base_model) on its Backbone and ReferenceNet SD1.5 weights; "
                    "temporal, audio and speed layers are untouched. SDXL/SD2/Flux are refused."),
        io.Model.Input(
            "base_model", optional=True,
            tooltip="The SD1.5 model style_model was made from (usually plain SD1.5; for a LoRA "
                    "alone: the same checkpoint, before Load LoRA, so the change is exactly the "
                    "LoRA). Empty: style weights replace EMO's in proportion to the strength."),
        io.Float.Input(
            "style_strength", default=1.0, min=0.0, max=2.0, step=0.05, optional=True,
            tooltip="How much of the style difference to add: 0 = plain EMO (bit-identical), "
                    "1 = the full difference, above 1 exaggerates it (artefacts likely)."),
        io.Float.Input(
            "style_strength_backbone", default=1.0, min=0.0, max=2.0, step=0.05, optional=True,
            tooltip="Factor on style_strength for the Backbone (the UNet that draws the frames)."),
        io.Float.Input(
            "style_strength_reference", default=1.0, min=0.0, max=2.0, step=0.05, optional=True,
            tooltip="Factor on style_strength for the ReferenceNet (reads the portrait). Lower "
                    "it to keep more of the person's identity while the Backbone takes the look."),
    ]


def apply_style_inputs(models, style_model=None, base_model=None, style_strength=1.0,
                       style_strength_backbone=1.0, style_strength_reference=1.0) -> str:
    """Apply the style inputs to ``models`` (EMOModels) in place; returns the report text.

    No ``style_model`` (or all strengths 0): nothing changes and the text says so; a
    ``base_model`` without a ``style_model`` is an error (it would silently do nothing).
    """
    if style_model is None:
        if base_model is not None:
            raise EMOInputError("base_model is connected but style_model is not: connect the "
                                "styled MODEL (e.g. Load LoRA's output) to style_model")
        return "no style model connected"
    check_sd15_model(style_model, "style_model")
    backbone = float(style_strength) * float(style_strength_backbone)
    reference = float(style_strength) * float(style_strength_reference)
    if backbone == 0.0 and reference == 0.0:
        return "style strength 0: EMO weights unchanged"
    source = ModelDeltaSource(style_model, base_model, dict(models.backbone.unet.config))
    report = apply_style_delta(models, source, strength_backbone=backbone,
                               strength_reference=reference)
    text = report.describe()
    logger.info("EMO style: %s", text)
    return text
