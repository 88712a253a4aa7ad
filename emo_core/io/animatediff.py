"""Load AnimateDiff (SD1.5) motion modules into the EMO Backbone's temporal modules.

The Backbone keeps AnimateDiff v2's parameter names, so the file's keys only gain the ``unet.``
prefix. Loading is strict over the AnimateDiff parameters: every one of them must come from the
file with the right shape. Parameters EMO adds inside the temporal blocks (speed
cross-attention) are not in AnimateDiff files and keep their (zero) initialisation.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError
from .conversion import (
    KeyReport,
    animatediff_to_backbone,
    check_motion_layout,
    compare_state_dicts,
    fit_positional_encodings,
    require_match,
    strip_prefix,
)
from .safe_load import load_state_dict
from .validate import check_finite, check_float_dtypes

logger = logging.getLogger(__name__)

_MOTION = ".motion_modules."
# What EMO adds inside a temporal block (speed cross-attention = third attention block + norm);
# AnimateDiff files never carry it.
EMO_ONLY_MOTION_PART = re.compile(r"\.transformer_blocks\.\d+\.(attention_blocks|norms)\.2\.")


def load_motion_module(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an AnimateDiff motion-module file (``.ckpt`` / ``.safetensors``), original key names.

    Returns ``{"down_blocks.0.motion_modules.0.temporal_transformer...": tensor}``; raises
    :class:`CheckpointError` when the file holds no (original-format) motion modules.
    """
    path = Path(path)
    state_dict = load_state_dict(path)
    try:
        animatediff_to_backbone(state_dict)  # validation only: raises on a wrong file
    except CheckpointError as error:
        raise CheckpointError(f"motion module {str(path)!r}: {error}") from error
    if all(k.startswith("module.") for k in state_dict):
        state_dict = strip_prefix(state_dict, "module.")
    what, hint = f"motion module {str(path)!r}", "use an undamaged SD1.5 AnimateDiff module"
    dtypes = {k: v.dtype for k, v in state_dict.items()}
    check_float_dtypes({k: torch.empty(0) for k in state_dict}, dtypes, what, hint)
    check_finite(state_dict, what, hint)
    return state_dict


def _is_emo_only(key: str) -> bool:
    return EMO_ONLY_MOTION_PART.search(key) is not None


def motion_parameters(backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The Backbone's AnimateDiff-named temporal tensors (EMO-only speed parts excluded)."""
    return {
        k: v for k, v in backbone.state_dict().items() if _MOTION in k and not _is_emo_only(k)
    }


def motion_report(backbone: torch.nn.Module, state_dict: Mapping) -> tuple[KeyReport, dict]:
    """(strict comparison, Backbone-named tensors ready to load) for an AnimateDiff state dict."""
    target = motion_parameters(backbone)
    converted = animatediff_to_backbone(state_dict)
    check_motion_layout(converted, target)
    converted = fit_positional_encodings(converted, target)
    return compare_state_dicts(target, converted), converted


def apply_motion_module(backbone: torch.nn.Module, state_dict: Mapping) -> int:
    """Copy AnimateDiff weights into ``backbone`` in place; returns the number of tensors loaded.

    Nothing is copied unless every AnimateDiff parameter of the backbone is present with the
    right shape and the file has nothing else (CheckpointError listing the differences).
    """
    report, converted = motion_report(backbone, state_dict)
    hint = "use an SD1.5 AnimateDiff motion module (mm_sd_v15_v2.ckpt or .safetensors)"
    require_match(report, "motion module", hint)
    check_float_dtypes(motion_parameters(backbone), {k: v.dtype for k, v in converted.items()},
                       "motion module", hint)
    check_finite(converted, "motion module", hint)
    result = backbone.load_state_dict(converted, strict=False)
    if result.unexpected_keys:  # cannot happen after the report above; guard the invariant
        raise RuntimeError(f"unexpected keys after strict check: {result.unexpected_keys[:5]}")
    logger.info("loaded %d motion-module tensors", len(converted))
    return len(converted)
