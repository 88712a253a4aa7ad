"""Key maps between LDM (original SD / civit.ai / ComfyUI) and diffusers UNet parameter names.

The LDM -> diffusers direction is diffusers' own ``convert_ldm_unet_checkpoint`` run over
placeholder tensors: each LDM name gets a 0-dim tensor holding its index, and reading the indices
back from the converted dict says where every name went. No weights are copied or reshaped.

The diffusers -> LDM direction (needed when no LDM file is at hand, e.g. to resolve LDM-named
LoRA keys) is generated from the block structure and then checked against that forward map: if
the two ever disagree (a diffusers change, an unusual config) a ``ValueError`` is raised instead
of applying weights to the wrong layers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

import torch
from diffusers.loaders.single_file_utils import LDM_UNET_KEY, convert_ldm_unet_checkpoint

logger = logging.getLogger(__name__)

# diffusers ResnetBlock2D attribute -> LDM ResBlock attribute.
_RESNET_PARTS = (
    ("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"),
)
_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
}
_OTHER_PARTS = ("first_stage_model.", "cond_stage_model.", "conditioner.", "model_ema.")
_DOWN = re.compile(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.+)")
_MID = re.compile(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)")
_UP = re.compile(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)")


def _resnet(rest: str) -> str:
    for diffusers_name, ldm_name in _RESNET_PARTS:
        if rest.startswith(diffusers_name + "."):
            return ldm_name + rest[len(diffusers_name):]
    raise ValueError(f"unknown ResNet parameter {rest!r}")


def _guess_ldm_name(key: str, per_block: int, up_attention: list[bool]) -> str:
    """One diffusers UNet parameter name -> its LDM name (SD1.x/2.x block numbering)."""
    module, _, param = key.rpartition(".")
    if module in _TOP_LEVEL:
        return f"{_TOP_LEVEL[module]}.{param}"
    stride = per_block + 1
    if m := _DOWN.fullmatch(key):
        level, kind, index, rest = int(m[1]), m[2], int(m[3]), m[4]
        if kind == "downsamplers":
            op = rest.removeprefix("conv.")
            return f"input_blocks.{1 + level * stride + per_block}.0.op.{op}"
        slot = 1 + level * stride + index
        return f"input_blocks.{slot}.0.{_resnet(rest)}" if kind == "resnets" else (
            f"input_blocks.{slot}.1.{rest}")
    if m := _MID.fullmatch(key):
        if m[1] == "attentions":
            return f"middle_block.1.{m[3]}"
        return f"middle_block.{2 * int(m[2])}.{_resnet(m[3])}"
    if m := _UP.fullmatch(key):
        level, kind, index, rest = int(m[1]), m[2], int(m[3]), m[4]
        if kind == "upsamplers":
            slot = 2 if up_attention[level] else 1
            return f"output_blocks.{level * stride + per_block}.{slot}.{rest}"
        part = f"0.{_resnet(rest)}" if kind == "resnets" else f"1.{rest}"
        return f"output_blocks.{level * stride + index}.{part}"
    raise ValueError(f"{key!r} is not a parameter of an SD1.x-layout UNet")


def ldm_to_diffusers_names(ldm_keys: Iterable[str], config: Mapping) -> dict[str, str]:
    """``{ldm_key: diffusers_name}`` for the UNet parameters among ``ldm_keys``.

    ``ldm_keys``: LDM UNet names with or without the ``model.diffusion_model.`` prefix, returned
    as given (VAE ``first_stage_model.*`` and text-encoder keys are ignored). ``config``: the
    diffusers UNet config (only ``layers_per_block`` and the block types matter). Names
    diffusers does not convert are left out; compare the result with the input to find them.
    """
    original = {k.removeprefix(LDM_UNET_KEY): k for k in ldm_keys
                if k.startswith(LDM_UNET_KEY) or not k.startswith(_OTHER_PARTS)}
    names = sorted(original)
    placeholders = {LDM_UNET_KEY + n: torch.tensor(i) for i, n in enumerate(names)}
    converted = convert_ldm_unet_checkpoint(placeholders, dict(config))
    mapping = {}
    for diffusers_name, index in converted.items():
        if isinstance(index, torch.Tensor) and index.ndim == 0:
            mapping[original[names[int(index)]]] = diffusers_name
    return mapping


def _config_key(config: Mapping) -> tuple:
    return (int(config["layers_per_block"]), tuple(config["down_block_types"]),
            tuple(config["up_block_types"]))


@lru_cache(maxsize=8)
def _verified_names(key: tuple, diffusers_keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    per_block, down_types, up_types = key
    up_attention = ["CrossAttn" in t for t in up_types]
    guessed = {d: _guess_ldm_name(d, per_block, up_attention) for d in diffusers_keys}
    config = {"layers_per_block": per_block, "down_block_types": list(down_types),
              "up_block_types": list(up_types)}
    forward = ldm_to_diffusers_names(guessed.values(), config)
    wrong = sorted(d for d, ldm in guessed.items() if forward.get(ldm) != d)
    if wrong:
        raise ValueError(
            f"LDM names generated for {len(wrong)} UNet parameters do not round-trip through "
            f"diffusers' converter (first: {wrong[:3]}); this UNet layout is not SD1.x-like"
        )
    return tuple(guessed.items())


def diffusers_to_ldm_names(diffusers_keys: Iterable[str], config: Mapping) -> dict[str, str]:
    """``{diffusers_name: ldm_name}`` (without the ``model.diffusion_model.`` prefix).

    ``diffusers_keys``: spatial parameter names of a ``UNet2DConditionModel`` with ``config``.
    Raises ``ValueError`` for a name outside the SD1.x layout or if the generated names are not
    exactly what diffusers' converter maps back.
    """
    return dict(_verified_names(_config_key(config), tuple(sorted(diffusers_keys))))
