"""Load a Stable Diffusion 1.5 UNet or VAE from local files, offline and strictly.

Accepted inputs: a diffusers pipeline folder (``unet/``, ``vae/`` subfolders), a folder that is
itself the component (``config.json`` + ``diffusion_pytorch_model.*``), or a single file:
an original/civit.ai checkpoint (``.safetensors`` or ``.ckpt``), a standalone VAE file, or a
diffusers component state dict. The architecture always comes from the shipped SD1.5 config (or
the one passed in), never from the network; the weights must fit it exactly.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.modeling_utils import no_init_weights

from ..errors import CheckpointError
from .conversion import (
    compare_state_dicts,
    ldm_to_diffusers_unet,
    ldm_to_diffusers_vae,
    require_match,
)
from .safe_load import WEIGHT_SUFFIXES, load_state_dict
from .validate import check_finite, check_float_dtypes

logger = logging.getLogger(__name__)

# Diffusers component file names, preferred first (safetensors before pickles, full before fp16).
_COMPONENT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
)


def shipped_config(name: str) -> dict:
    """One of the bundled diffusers configs: ``"unet"``, ``"vae"`` or ``"scheduler"``."""
    if name not in ("unet", "vae", "scheduler"):
        raise ValueError(f"unknown shipped config {name!r}; expected unet, vae or scheduler")
    text = resources.files(__package__).joinpath(f"configs/sd15_{name}.json").read_text("utf-8")
    return json.loads(text)


def component_file(path: Path, subfolder: str) -> Path:
    """The weight file of a component given a pipeline folder, component folder or file."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(
            f"SD1.5 {subfolder} path {str(path)!r} does not exist; pass a diffusers folder, a "
            f"{subfolder}/ folder or a single {'/'.join(WEIGHT_SUFFIXES)} file"
        )
    for folder in (path / subfolder, path):
        for name in _COMPONENT_FILES:
            if (folder / name).is_file():
                return folder / name
    singles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in WEIGHT_SUFFIXES)
    raise CheckpointError(
        f"no {subfolder} weights in folder {str(path)!r}: expected {subfolder}/"
        f"{_COMPONENT_FILES[0]} (diffusers layout) or the file itself"
        + (f"; this folder holds {singles}: pass one of those files directly" if singles else "")
    )


def _build_and_load(cls, config: Mapping, state_dict: Mapping, what: str, dtype):
    # Skipping random init: every parameter is overwritten by the strict load below.
    with no_init_weights():
        model = cls.from_config(dict(config))
    hint = "use a Stable Diffusion 1.5 checkpoint (not SD2/SDXL, not inpainting, not a LoRA)"
    require_match(compare_state_dicts(model.state_dict(), state_dict), what, hint)
    check_float_dtypes(model.state_dict(), {k: v.dtype for k, v in state_dict.items()}, what,
                       hint)
    check_finite(state_dict, what, "use an undamaged copy of the checkpoint")
    model.load_state_dict(state_dict, strict=True)
    return model.to(dtype=dtype).eval()


def unet_from_state_dict(
    state_dict: Mapping, config: Mapping | None = None, dtype: torch.dtype = torch.float32,
    what: str = "UNet",
) -> UNet2DConditionModel:
    """SD1.5 UNet from an already-read state dict (LDM or diffusers names)."""
    config = dict(config or shipped_config("unet"))
    try:
        converted = ldm_to_diffusers_unet(state_dict, config)
    except CheckpointError as error:  # say which file: the converters only see tensors
        raise CheckpointError(f"{what}: {error}") from None
    return _build_and_load(UNet2DConditionModel, config, converted, what, dtype)


def vae_from_state_dict(
    state_dict: Mapping, config: Mapping | None = None, dtype: torch.dtype = torch.float32,
    what: str = "VAE",
) -> AutoencoderKL:
    """SD VAE from an already-read state dict (full checkpoint, LDM VAE or diffusers names)."""
    config = dict(config or shipped_config("vae"))
    try:
        converted = ldm_to_diffusers_vae(state_dict, config)
    except CheckpointError as error:
        raise CheckpointError(f"{what}: {error}") from None
    return _build_and_load(AutoencoderKL, config, converted, what, dtype)


def load_sd15_unet(
    path: str | os.PathLike, config: Mapping | None = None, dtype: torch.dtype = torch.float32
) -> UNet2DConditionModel:
    """SD1.5 UNet from a folder or single file. ``config`` defaults to the shipped SD1.5 one."""
    file = component_file(Path(path), "unet")
    logger.info("loading SD1.5 UNet from %s", file)
    return unet_from_state_dict(load_state_dict(file), config, dtype, f"UNet in {file}")


def load_sd15_vae(
    path: str | os.PathLike, config: Mapping | None = None, dtype: torch.dtype = torch.float32
) -> AutoencoderKL:
    """SD VAE from a folder or single file. ``config`` defaults to the shipped SD1.5 one."""
    file = component_file(Path(path), "vae")
    logger.info("loading VAE from %s", file)
    return vae_from_state_dict(load_state_dict(file), config, dtype, f"VAE in {file}")
