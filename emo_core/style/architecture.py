"""Is a style/base checkpoint an SD1.5 UNet that fits the EMO UNets? Decided from names and shapes.

Extends ``emo_core.io.conversion.detect_unet_format`` (SDXL, SD2 cross-attention width,
inpainting channels, LoRA files, non-UNet files) with the families it does not name: DiT/MMDiT
models (SD3, Flux, PixArt...), video UNets (SVD, AnimateDiff-merged checkpoints) and UNets whose
widths differ from the EMO model's (e.g. a full SD1.5 checkpoint against tiny demo weights).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..errors import CheckpointError
from ..io.conversion import detect_unet_format

logger = logging.getLogger(__name__)

# (substring of any key, family) for models that are not SD1.x UNets; first match wins.
_FOREIGN_MARKERS = (
    ("double_blocks.", "Flux (DiT)"),
    ("joint_blocks.", "Stable Diffusion 3 (MMDiT)"),
    ("transformer_blocks.0.attn.to_added_qkv", "a DiT transformer"),
    ("adaln_single.", "PixArt (DiT)"),
    (".time_stack.", "a video UNet (Stable Video Diffusion)"),
    (".time_mixer.", "a video UNet (Stable Video Diffusion)"),
    ("motion_modules.", "an AnimateDiff/video UNet"),
    ("temporal_transformer.", "an AnimateDiff motion module"),
)


def _foreign_family(keys) -> str | None:
    for key in keys:
        for marker, family in _FOREIGN_MARKERS:
            if marker in key:
                return family
    return None


def check_sd15_unet(shapes: Mapping, unet_config: Mapping, what: str) -> str:
    """Refuse anything but an SD1.x UNet with ``unet_config``'s widths; return ``"ldm"`` or
    ``"diffusers"`` (the naming of ``shapes``).

    ``shapes``: ``{name: shape | tensor}`` of the whole file (headers are enough). ``what`` names
    the input in messages (``"--style-checkpoint model.safetensors"``).
    """
    family = _foreign_family(shapes)
    if family is not None:
        raise CheckpointError(
            f"{what} is {family}, not a Stable Diffusion 1.5 UNet; EMO styles come from SD1.5 "
            "checkpoints and LoRAs (civit.ai 'SD 1.5' base model): use one of those"
        )
    try:
        return detect_unet_format(shapes, unet_config)
    except CheckpointError as error:
        raise CheckpointError(f"{what}: {error}") from error


def check_shapes_fit(source: Mapping, target: Mapping, what: str, component: str) -> None:
    """Refuse a source whose UNet tensors do not have the shapes of the EMO ``component``'s.

    ``source``/``target``: ``{diffusers_name: shape | tensor}``; only shared names are compared.
    The usual cause is a real SD1.5 checkpoint against tiny demo EMO weights, or the reverse.
    """
    bad = [(k, tuple(source[k].shape if hasattr(source[k], "shape") else source[k]),
            tuple(target[k].shape if hasattr(target[k], "shape") else target[k]))
           for k in sorted(source) if k in target]
    bad = [(k, s, t) for k, s, t in bad if s != t]
    if bad:
        shown = ", ".join(f"{k} ({list(s)} vs EMO {list(t)})" for k, s, t in bad[:3])
        raise CheckpointError(
            f"{what} has UNet widths that differ from the EMO {component} ({len(bad)} tensors, "
            f"e.g. {shown}); the style must come from the same architecture as the EMO "
            "checkpoint (SD1.5 for real EMO weights; tiny demo weights only take tiny styles)"
        )
