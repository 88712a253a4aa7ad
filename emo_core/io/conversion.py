"""Pure functions over state dicts: key renames, architecture checks, strict comparison.

Nothing here reads files or builds models. State dicts are ``{name: tensor}``; where only shapes
matter a ``{name: shape}`` mapping is accepted as well. The LDM (original Stable Diffusion /
civit.ai single file) renames are diffusers' own ``single_file_utils`` converters, driven by the
shipped SD1.5 config, so they work offline.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from diffusers.loaders.single_file_utils import (
    LDM_UNET_KEY,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)

from ..errors import CheckpointError

logger = logging.getLogger(__name__)

# Component prefixes of the EMO checkpoint, in file order; "context" is a bare top-level tensor.
EMO_COMPONENTS = (
    "reference_net", "backbone", "face_locator", "audio_projection", "speed_encoder", "vae",
    "image_projection",
)
EMO_TOP_LEVEL = ("context",)

# Cross-attention width -> model family, for error messages only.
_FAMILY_BY_CROSS_DIM = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL", 1280: "SDXL refiner"}
_IN_CHANNEL_VARIANTS = {9: "an inpainting model", 8: "an instruct-pix2pix model"}
_SDXL_MARKERS = ("conditioner.embedders.", LDM_UNET_KEY + "label_emb.", "add_embedding.")
_DIFFUSERS_UNET_MARKER = "time_embedding.linear_1.weight"
_LDM_UNET_MARKER = LDM_UNET_KEY + "time_embed.0.weight"


def _shape(value: torch.Tensor | tuple[int, ...]) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else tuple(value)


# --------------------------------------------------------------------------- strict comparison


@dataclass(frozen=True)
class KeyReport:
    """Difference between the keys a model expects and the keys a file provides."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 5) -> str:
        """Counts plus the first ``limit`` keys of each kind, one kind per line."""
        lines = []
        if self.missing:
            lines.append(f"{len(self.missing)} missing: {', '.join(self.missing[:limit])}"
                         + (" ..." if len(self.missing) > limit else ""))
        if self.unexpected:
            lines.append(f"{len(self.unexpected)} unexpected: "
                         f"{', '.join(self.unexpected[:limit])}"
                         + (" ..." if len(self.unexpected) > limit else ""))
        if self.mismatched:
            shown = ", ".join(f"{k} (model {list(e)}, file {list(f)})"
                              for k, e, f in self.mismatched[:limit])
            lines.append(f"{len(self.mismatched)} mis-shaped: {shown}"
                         + (" ..." if len(self.mismatched) > limit else ""))
        return "\n".join(lines) if lines else "all keys match"


def compare_state_dicts(expected: Mapping, found: Mapping) -> KeyReport:
    """Compare names and shapes. ``expected``/``found``: ``{name: tensor | shape}``."""
    missing = sorted(k for k in expected if k not in found)
    unexpected = sorted(k for k in found if k not in expected)
    mismatched = sorted(
        (k, _shape(expected[k]), _shape(found[k]))
        for k in expected
        if k in found and _shape(expected[k]) != _shape(found[k])
    )
    return KeyReport(missing, unexpected, mismatched)


def require_match(report: KeyReport, what: str, hint: str) -> None:
    """Raise :class:`CheckpointError` naming ``what`` unless ``report.ok``; ``hint`` says what
    to do."""
    if not report.ok:  # one line: the CLI prints errors as a single "error: ..." line
        details = report.describe().replace("\n", "; ")
        raise CheckpointError(f"{what} does not match the model architecture: {details}; {hint}")


# --------------------------------------------------------------------------- prefixes


def add_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``{"a.b": t}`` -> ``{prefix + "a.b": t}``."""
    return {prefix + key: value for key, value in state_dict.items()}


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys starting with ``prefix``, with the prefix removed; other keys are left out."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def split_emo_components(state_dict: Mapping[str, torch.Tensor]) -> dict[str, dict]:
    """Group an EMO checkpoint by component: ``{"backbone": {...}, ..., "": {"context": t}}``.

    Top-level tensors (the context) land under ``""``. A key that belongs to no known component
    raises :class:`CheckpointError` (it would be silently ignored otherwise).
    """
    groups: dict[str, dict] = {name: {} for name in (*EMO_COMPONENTS, "")}
    unknown = []
    for key, value in state_dict.items():
        head, _, rest = key.partition(".")
        if head in EMO_COMPONENTS and rest:
            groups[head][rest] = value
        elif key in EMO_TOP_LEVEL:
            groups[""][key] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"{len(unknown)} tensors belong to no EMO component (first: {unknown[:5]}); expected "
            f"prefixes {', '.join(p + '.' for p in EMO_COMPONENTS)} or {list(EMO_TOP_LEVEL)}"
        )
    return {name: group for name, group in groups.items() if group}


# --------------------------------------------------------------------------- SD1.5 single files


def _first_cross_attention_dim(state_dict: Mapping, prefix: str) -> int | None:
    for key, value in state_dict.items():
        if key.startswith(prefix) and key.endswith("attn2.to_k.weight"):
            return _shape(value)[-1]
    return None


def detect_unet_format(state_dict: Mapping, config: Mapping) -> str:
    """``"ldm"`` or ``"diffusers"`` for a UNet that fits ``config``; otherwise CheckpointError.

    Refuses SDXL (``conditioner.embedders`` / ``label_emb``), other cross-attention widths
    (SD2.x: 1024) and other input channel counts (inpainting: 9) with a message naming what was
    found and what is expected.
    """
    if any(k.startswith(_SDXL_MARKERS) for k in state_dict):
        raise CheckpointError(
            "this checkpoint is SDXL (it has conditioner.embedders / label_emb weights); "
            "EMO is built on Stable Diffusion 1.5: use an SD1.5 checkpoint"
        )
    if _LDM_UNET_MARKER in state_dict:
        kind, prefix, conv_in = "ldm", LDM_UNET_KEY, LDM_UNET_KEY + "input_blocks.0.0.weight"
    elif _DIFFUSERS_UNET_MARKER in state_dict:
        kind, prefix, conv_in = "diffusers", "", "conv_in.weight"
    else:
        if any("lora" in k.lower() for k in state_dict):
            found = "LoRA weights (a LoRA is not a full model)"
        else:
            found = f"{len(state_dict)} tensors such as {sorted(state_dict)[:3]}"
        raise CheckpointError(
            f"no Stable Diffusion UNet found in this file: it holds {found}; expected a full SD1.5 "
            f"checkpoint (keys {LDM_UNET_KEY}*) or a diffusers UNet (keys conv_in.*, down_blocks.*)"
        )
    expected_dim = config["cross_attention_dim"]
    dim = _first_cross_attention_dim(state_dict, prefix)
    if dim is not None and dim != expected_dim:
        family = _FAMILY_BY_CROSS_DIM.get(dim, "not SD1.5")
        raise CheckpointError(
            f"this UNet has cross-attention width {dim} ({family}); EMO expects {expected_dim} "
            "(Stable Diffusion 1.5): use an SD1.5 checkpoint"
        )
    in_channels = _shape(state_dict[conv_in])[1] if conv_in in state_dict else None
    if in_channels is not None and in_channels != config["in_channels"]:
        variant = _IN_CHANNEL_VARIANTS.get(in_channels, "a different model variant")
        raise CheckpointError(
            f"this UNet takes {in_channels} input channels ({variant}); EMO expects "
            f"{config['in_channels']}: use a plain (non-inpainting) SD1.5 checkpoint"
        )
    return kind


def _drop_empty(converted: dict, what: str) -> dict[str, torch.Tensor]:
    # diffusers' converters use dict.get(), so a structure that does not fit yields None values.
    empty = sorted(k for k, v in converted.items() if v is None)
    if empty:
        raise CheckpointError(
            f"the {what} weights do not have the SD1.5 layout: {len(empty)} tensors could not be "
            f"mapped (first: {empty[:5]}); use an SD1.5 checkpoint"
        )
    return converted


def ldm_to_diffusers_unet(state_dict: Mapping, config: Mapping) -> dict[str, torch.Tensor]:
    """SD1.5 UNet in any supported naming -> diffusers ``UNet2DConditionModel`` names.

    ``state_dict``: a full LDM/civit.ai checkpoint (``model.diffusion_model.*``, other parts are
    ignored) or an already-diffusers UNet state dict. ``config``: the UNet's diffusers config.
    """
    if detect_unet_format(state_dict, config) == "diffusers":
        return dict(state_dict)
    converted = convert_ldm_unet_checkpoint(dict(state_dict), dict(config))
    return _drop_empty(converted, "UNet")


_LDM_VAE_MARKERS = ("encoder.down.0.block.0.conv1.weight", "decoder.up.0.block.0.conv1.weight")
_DIFFUSERS_VAE_MARKER = "encoder.down_blocks.0.resnets.0.conv1.weight"


# Older diffusers VAE files (e.g. sd-vae-ft-mse) still use the pre-0.14 attention names.
_LEGACY_VAE_ATTENTION = ((".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."),
                         (".proj_attn.", ".to_out.0."))


def _rename_legacy_vae_attention(state_dict: Mapping) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        if ".mid_block.attentions." in key:
            for old, new in _LEGACY_VAE_ATTENTION:
                key = key.replace(old, new)
        out[key] = value
    return out


def has_vae_weights(state_dict: Mapping) -> bool:
    """Whether ``state_dict`` carries a VAE in any naming :func:`ldm_to_diffusers_vae` accepts."""
    return _DIFFUSERS_VAE_MARKER in state_dict or any(
        p + m in state_dict for p in ("first_stage_model.", "") for m in _LDM_VAE_MARKERS
    )


def ldm_to_diffusers_vae(state_dict: Mapping, config: Mapping) -> dict[str, torch.Tensor]:
    """SD VAE in any supported naming -> diffusers ``AutoencoderKL`` names.

    Accepts a full SD checkpoint (``first_stage_model.*``), a standalone LDM VAE file
    (``encoder.down.0.block...``, e.g. vae-ft-mse-840000-ema-pruned) or a diffusers VAE.
    """
    if _DIFFUSERS_VAE_MARKER in state_dict:
        return _rename_legacy_vae_attention(state_dict)
    if not has_vae_weights(state_dict):
        raise CheckpointError(
            "no VAE found in this file; expected a full SD1.5 checkpoint (first_stage_model.*), "
            "an LDM VAE file (encoder.down.*) or a diffusers VAE (encoder.down_blocks.*)"
        )
    converted = convert_ldm_vae_checkpoint(dict(state_dict), dict(config))
    return _drop_empty(converted, "VAE")


# --------------------------------------------------------------------------- AnimateDiff

_MOTION_KEY = re.compile(r"^(down_blocks\.\d+|mid_block|up_blocks\.\d+)\.motion_modules\.\d+\.")
POS_ENCODING_SUFFIX = "pos_encoder.pe"


def motion_levels(keys, prefix: str = "") -> dict[str, set[str]]:
    """``{"down": {"0", "1"}, "mid": {...}, "up": {...}}``: block indices holding motion modules."""
    levels: dict[str, set[str]] = {"down": set(), "mid": set(), "up": set()}
    for key in keys:
        match = _MOTION_KEY.match(key[len(prefix):]) if key.startswith(prefix) else None
        if match:
            block = match.group(1)
            levels[block.split("_")[0]].add(block.rpartition(".")[2] if "." in block else "0")
    return levels


def animatediff_to_backbone(state_dict: Mapping, prefix: str = "unet.") -> dict:
    """AnimateDiff original keys -> Backbone keys (``down_blocks.0.motion_modules.0.x`` ->
    ``unet.down_blocks.0.motion_modules.0.x``).

    Also removes a ``module.`` (DataParallel) wrapper. Refuses diffusers ``MotionAdapter`` files
    (their names differ) and files without motion modules.
    """
    sd = dict(state_dict)
    if sd and all(k.startswith("module.") for k in sd):
        sd = strip_prefix(sd, "module.")
    if any(".temporal_transformer." not in k and ".motion_modules." in k for k in sd):
        raise CheckpointError(
            "this motion module uses diffusers MotionAdapter names (no temporal_transformer); "
            "EMO loads the original AnimateDiff release: use mm_sd_v15_v2.ckpt / .safetensors"
        )
    motion = {k: v for k, v in sd.items() if _MOTION_KEY.match(k)}
    if not motion:
        raise CheckpointError(
            f"no AnimateDiff motion modules found ({len(sd)} tensors such as {sorted(sd)[:3]}); "
            "expected keys like down_blocks.0.motion_modules.0.temporal_transformer.*"
        )
    return add_prefix(motion, prefix)


def check_motion_layout(source_keys, target_keys) -> None:
    """Refuse motion modules made for another UNet layout, with a message naming it.

    ``source_keys``/``target_keys``: Backbone-named keys of the file and of the model.
    """
    src, dst = motion_levels(source_keys, "unet."), motion_levels(target_keys, "unet.")
    if src["down"] != dst["down"] or src["up"] != dst["up"]:
        guess = " (SDXL motion modules have 3 levels)" if len(src["down"]) == 3 else ""
        raise CheckpointError(
            f"motion module levels down {sorted(src['down'])} / up {sorted(src['up'])} do not "
            f"match the backbone's down {sorted(dst['down'])} / up {sorted(dst['up'])}{guess}; "
            "use an SD1.5 AnimateDiff motion module such as mm_sd_v15_v2.ckpt"
        )
    if dst["mid"] and not src["mid"]:
        raise CheckpointError(
            "this motion module has no mid-block module (AnimateDiff v1, mm_sd_v15.ckpt); the "
            "backbone needs one: use mm_sd_v15_v2.ckpt (or v3_sd15_mm.ckpt)"
        )


def fit_positional_encodings(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Adapt ``*.pos_encoder.pe`` tensors ``(1, max_len, c)`` to the model's ``max_len``.

    AnimateDiff's table is a fixed sinusoid, so rows are the same whatever its length: a longer
    table is cut; a shorter one (v1: 24) keeps its rows and takes the rest from the model's own
    table. Tables that do not agree on the shared rows are left alone (the strict check reports
    them). Keys the model does not store are dropped.
    """
    out = dict(source)
    for key in [k for k in out if k.endswith(POS_ENCODING_SUFFIX)]:
        if key not in target:
            del out[key]
            continue
        src, dst = out[key], target[key]
        if src.ndim != 3 or src.shape[::2] != dst.shape[::2] or src.shape[1] == dst.shape[1]:
            continue
        shared = min(src.shape[1], dst.shape[1])
        # Tolerance: fp16 files round sin/cos values to ~1e-3.
        if not torch.allclose(src[:, :shared].float(), dst[:, :shared].float(), atol=2e-3):
            continue
        logger.info("%s: positional table %d -> %d rows", key, src.shape[1], dst.shape[1])
        if src.shape[1] > dst.shape[1]:
            out[key] = src[:, : dst.shape[1]]
        else:
            out[key] = torch.cat([src, dst[:, shared:].to(src.dtype)], dim=1)
    return out
