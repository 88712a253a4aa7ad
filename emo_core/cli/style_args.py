"""Command-line options for civit.ai styles: ``--style-checkpoint``, ``--base-checkpoint``,
``--lora FILE:STRENGTH`` (repeatable) and the strengths; shared by every command that loads EMO.

Usage in a command::

    add_style_arguments(parser)
    ...
    report = apply_style_from_args(models, args)   # None when no style option was given
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import EMOInputError

logger = logging.getLogger(__name__)


def parse_lora_spec(spec: str) -> tuple[Path, float]:
    """``"FILE:STRENGTH"`` or ``"FILE"`` (strength 1) -> ``(path, strength)``.

    The strength is taken after the LAST colon only when it parses as a number, so Windows
    paths (``C:\\loras\\x.safetensors``) keep their drive letter.
    """
    path, sep, tail = spec.rpartition(":")
    if sep and path:
        try:
            return Path(path), float(tail)
        except ValueError:
            pass
    if not spec:
        raise EMOInputError("--lora needs FILE or FILE:STRENGTH, got an empty value")
    return Path(spec), 1.0


def _lora_type(spec: str) -> tuple[Path, float]:
    try:
        return parse_lora_spec(spec)
    except EMOInputError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def add_style_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the style option group to ``parser``."""
    group = parser.add_argument_group(
        "style (civit.ai SD1.5 checkpoints and LoRAs, added as weight deltas)")
    group.add_argument("--style-checkpoint", type=Path, metavar="FILE",
                       help="SD1.5 fine-tune (civit.ai single file or diffusers folder) whose "
                            "difference to --base-checkpoint is added to EMO's UNets")
    group.add_argument("--base-checkpoint", type=Path, metavar="FILE",
                       help="the model the style was fine-tuned from (plain SD1.5); without it "
                            "the style weights replace EMO's in proportion to the strength")
    group.add_argument("--lora", type=_lora_type, action="append", default=[],
                       metavar="FILE:STRENGTH",
                       help="kohya/civit.ai SD1.5 LoRA with its weight (default 1); repeatable; "
                            "text-encoder layers are ignored (EMO has no text)")
    group.add_argument("--style-strength", type=float, default=1.0,
                       help="overall strength of the style delta (0 = plain EMO, default 1)")
    group.add_argument("--style-strength-backbone", type=float, default=1.0,
                       help="factor on --style-strength for the Backbone (default 1)")
    group.add_argument("--style-strength-reference", type=float, default=1.0,
                       help="factor on --style-strength for the ReferenceNet (default 1); "
                            "lower it to keep more of the portrait's identity")


def style_requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "style_checkpoint", None) or getattr(args, "lora", None)
                or getattr(args, "base_checkpoint", None))


def apply_style_from_args(models, args: argparse.Namespace):
    """Apply the options parsed by :func:`add_style_arguments` to ``models`` (EMOModels).

    Returns the :class:`~emo_core.style.StyleReport`, or ``None`` when no style option was
    given. Raises :class:`~emo_core.errors.EMOInputError` for bad files or strengths.
    """
    if not style_requested(args):
        return None
    from ..style import CheckpointDeltaSource, apply_style_delta

    # Effective strength per UNet = overall x per-component factor (same rule as the node).
    backbone = args.style_strength * args.style_strength_backbone
    reference = args.style_strength * args.style_strength_reference
    source = CheckpointDeltaSource(
        dict(models.backbone.unet.config), style=args.style_checkpoint,
        base=args.base_checkpoint, loras=list(args.lora))
    return apply_style_delta(models, source, strength_backbone=backbone,
                             strength_reference=reference)
