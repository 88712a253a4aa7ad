"""Kohya / civit.ai / diffusers LoRA files -> per-parameter weight deltas of an SD1.5 UNet.

Accepted key styles (all map onto diffusers ``UNet2DConditionModel`` parameter names):

- kohya, diffusers block names: ``lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight``
- kohya, LDM block names:       ``lora_unet_input_blocks_1_1_proj_in.lora_down.weight``
- ComfyUI / LDM dotted:         ``diffusion_model.input_blocks.1.1.proj_in.lora_down.weight``
- peft / diffusers:             ``unet.down_blocks.0.attentions.0.proj_in.lora_A.weight``
- old diffusers attn-procs:     ``...attn1.processor.to_q_lora.down.weight``

with optional ``<name>.alpha`` (scale = alpha / rank; no alpha means scale 1). Conv LoRA (LoCon,
1x1 and 3x3) uses the same product, reshaped to the kernel. Text-encoder keys (``lora_te*``,
``text_encoder.``) are ignored with a log note: EMO has no text conditioning. LyCORIS types with
another formula (LoHa, LoKr, DoRA, Tucker ``lora_mid``) are refused with a message pointing at
ComfyUI's LoraLoader, which does handle them. Underscore names are resolved against the real
module names (never split heuristically), so a name that fits no SD1.5 module is an error.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..io.safe_load import load_state_dict
from ..io.validate import check_finite
from .ldm_keys import diffusers_to_ldm_names

logger = logging.getLogger(__name__)

# suffix -> ("down" | "up", length of the suffix); longest first so ".lora.down.weight" wins.
_PARTS = (
    (".lora_down.weight", "down"), (".lora_up.weight", "up"),
    (".lora_A.weight", "down"), (".lora_B.weight", "up"),
    (".lora.down.weight", "down"), (".lora.up.weight", "up"),
    ("_lora.down.weight", "down"), ("_lora.up.weight", "up"),
)
_TEXT_ENCODER = ("lora_te_", "lora_te1_", "lora_te2_", "text_encoder.", "text_encoder_2.", "te_",
                 "cond_stage_model.", "clip_l.")
_UNET_PREFIXES = ("lora_unet_", "unet.", "model.diffusion_model.", "diffusion_model.")
_UNSUPPORTED = {
    "hada_w1_a": "LoHa", "lokr_w1": "LoKr", "dora_scale": "DoRA", "lora_mid": "LoCon Tucker",
    ".diff": "full-difference", "oft_blocks": "OFT", "on_input": "IA3",
}
_OLD_PROCESSOR = re.compile(r"\.processor\.(to_[qkv]|to_out)$")


@dataclass(frozen=True)
class LoraLayer:
    """One adapted parameter: ``delta = scale * up @ down`` reshaped to the weight."""

    down: torch.Tensor  # (r, in) or (r, in, kh, kw)
    up: torch.Tensor  # (out, r) or (out, r, 1, 1)
    alpha: float | None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return 1.0 if self.alpha is None else self.alpha / self.rank

    def delta(self, shape: torch.Size | tuple[int, ...], device=None) -> torch.Tensor:
        """fp32 weight delta of ``shape`` (the target parameter's shape), on ``device``."""
        up = self.up.to(device=device, dtype=torch.float32).flatten(1)
        down = self.down.to(device=device, dtype=torch.float32).flatten(1)
        product = up @ down  # (out, in * kh * kw)
        return (product * self.scale).reshape(shape)


@dataclass
class LoraFile:
    """The UNet layers of one LoRA file, keyed by diffusers parameter name (``....weight``)."""

    path: str
    layers: dict[str, LoraLayer] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # target parameter shapes
    ignored_text_encoder: int = 0

    def delta(self, key: str, shape, device=None) -> torch.Tensor:
        return self.layers[key].delta(shape, device)


def _split(key: str) -> tuple[str, str] | None:
    for suffix, part in _PARTS:
        if key.endswith(suffix):
            return key[: -len(suffix)], part
    return None


def _module_lookup(param_keys: Iterable[str], config: Mapping) -> dict[str, str]:
    """Every accepted spelling of a module -> its diffusers weight key.

    ``param_keys``: all spatial parameter names (biases too: the name check needs a whole UNet).
    """
    ldm = diffusers_to_ldm_names(param_keys, config)
    lookup: dict[str, str] = {}
    for key in sorted(k for k in ldm if k.endswith(".weight")):
        for module in (key.removesuffix(".weight"), ldm[key].removesuffix(".weight")):
            lookup[module] = key
            lookup["lora_unet_" + module.replace(".", "_")] = key
    return lookup


def _module_name(stem: str) -> str:
    """Strip the UNet prefix and old attn-processor spelling from a LoRA layer name."""
    for prefix in ("model.diffusion_model.", "diffusion_model.", "unet."):
        stem = stem.removeprefix(prefix)
    match = _OLD_PROCESSOR.search(stem)
    if match:
        target = "to_out.0" if match[1] == "to_out" else match[1]
        stem = stem[: match.start()] + "." + target
    return stem


def _refuse_unsupported(state_dict: Mapping, path: str) -> None:
    for marker, kind in _UNSUPPORTED.items():
        if any(marker in k for k in state_dict):
            raise CheckpointError(
                f"LoRA {path!r} is a {kind} network, which the EMO command line does not apply; "
                "load it with ComfyUI's LoraLoader and connect the result to Load EMO Models' "
                "style_model input, or use a plain (LoCon) LoRA"
            )


def _group(state_dict: Mapping, path: str) -> tuple[dict[str, dict], int]:
    """``{layer stem: {"down", "up", "alpha"}}`` for UNet layers; count of text-encoder keys."""
    groups: dict[str, dict] = {}
    ignored = 0
    for key, value in state_dict.items():
        if key.startswith(_TEXT_ENCODER):
            ignored += 1
            continue
        if key.endswith(".alpha"):
            groups.setdefault(key[: -len(".alpha")], {})["alpha"] = _alpha(value, key, path)
            continue
        if not value.is_floating_point() or value.ndim not in (2, 4):
            raise CheckpointError(
                f"LoRA {path!r}: {key} is a {value.dtype} tensor of shape {list(value.shape)}; "
                "LoRA weights are 2-D or 4-D floating-point tensors: the file is damaged or not "
                "a LoRA")
        split = _split(key)
        if split is None or not key.startswith(_UNET_PREFIXES + ("down_blocks", "mid_block",
                                                               "up_blocks")):
            raise CheckpointError(
                f"LoRA {path!r}: key {key!r} is not a LoRA weight of an SD1.5 UNet or text "
                "encoder (expected lora_unet_*.lora_down/up.weight, unet.*.lora_A/B.weight...)"
            )
        groups.setdefault(split[0], {})[split[1]] = value
    return groups, ignored


def _alpha(value, key: str, path: str) -> float:
    """A LoRA alpha: one finite number."""
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise CheckpointError(f"LoRA {path!r}: {key} must be a single number, got shape "
                              f"{list(getattr(value, 'shape', []))}; the file is damaged")
    alpha = float(value)
    if not math.isfinite(alpha):
        raise CheckpointError(f"LoRA {path!r}: {key} is {alpha}; the file is damaged")
    return alpha


def parse_lora(state_dict: Mapping[str, torch.Tensor], weight_shapes: Mapping,
               config: Mapping, path: str = "<LoRA>") -> LoraFile:
    """Resolve a LoRA state dict against the UNet parameters ``weight_shapes``.

    ``weight_shapes``: ``{diffusers weight name: shape}`` of the spatial UNet (SD1.5 layout);
    ``config``: its diffusers config. Raises :class:`CheckpointError` for layers SD1.5 does not
    have or whose shapes do not fit (a LoRA trained for SDXL/SD2), naming the first few.
    """
    _refuse_unsupported(state_dict, path)
    groups, ignored = _group(state_dict, path)
    check_finite(state_dict, f"LoRA {path!r}", "use an undamaged copy of the LoRA file")
    lookup = _module_lookup(weight_shapes, config)
    result, unknown, misfit = LoraFile(path=path, ignored_text_encoder=ignored), [], []
    for stem, parts in groups.items():
        if "down" not in parts or "up" not in parts:
            if set(parts) != {"alpha"}:
                unknown.append(f"{stem} (has {sorted(parts)}, needs down and up)")
            continue
        target = lookup.get(stem) or lookup.get(_module_name(stem))
        if target is None:
            unknown.append(stem)
            continue
        layer = LoraLayer(parts["down"], parts["up"], parts.get("alpha"))
        shape = tuple(weight_shapes[target])
        if layer.up.shape[0] * layer.down[0].numel() != torch.Size(shape).numel():
            misfit.append(f"{stem} -> {target} {list(shape)}")
            continue
        result.layers[target] = layer
        result.shapes[target] = shape
    if unknown or misfit:
        raise CheckpointError(
            f"LoRA {path!r} does not fit an SD1.5 UNet: {len(unknown)} layers it does not have "
            f"(first: {unknown[:3]}), {len(misfit)} of the wrong size (first: {misfit[:3]}); "
            "use a LoRA trained for Stable Diffusion 1.5 (not SDXL, SD2, Flux)"
        )
    if not result.layers:
        raise CheckpointError(f"LoRA {path!r} has no UNet layers; nothing to apply to EMO")
    if ignored:
        logger.info("LoRA %s: ignored %d text-encoder tensors (EMO has no text conditioning)",
                    path, ignored)
    return result


def load_lora(path: str | Path, weight_shapes: Mapping, config: Mapping) -> LoraFile:
    """Read a LoRA file (.safetensors, or a legacy pickle via weights_only) and resolve it."""
    return parse_lora(load_state_dict(path), weight_shapes, config, str(path))
