"""Core MODEL (ComfyUI ModelPatcher) -> an ``emo_core.style`` delta source.

A MODEL from CheckpointLoaderSimple (+ LoraLoader, ModelMergeSimple, ...) is an unpatched UNet
plus a list of patches per weight. ``ModelDeltaSource`` reads one LDM-named UNet weight at a time,
applies every patch ComfyUI holds for it with ``comfy.lora.calculate_weight`` in fp32 on the CPU
(the same function ComfyUI uses when it loads the model, so LoRA types ComfyUI knows - LoCon,
LoHa, LoKr, DoRA - all work) and hands ``style - base`` to ``emo_core.style.apply_style_delta``.
The MODELs themselves are never loaded to the GPU or modified, and no full copy is made.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from emo_core.errors import EMOInputError
from emo_core.style.architecture import check_sd15_unet
from emo_core.style.ldm_keys import ldm_to_diffusers_names
from emo_core.style.spatial import spatial_shapes

from . import comfy_bridge as bridge

logger = logging.getLogger(__name__)

UNET_PREFIX = "diffusion_model."  # ComfyUI's BaseModel attribute holding the UNet


def describe_model(model) -> str:
    """What a MODEL is, in ComfyUI's words: ``SDXL``, ``Flux``, ``SD15``..."""
    inner = getattr(model, "model", None)
    config = getattr(inner, "model_config", None)
    return type(config).__name__ if config is not None else type(inner or model).__name__


def check_sd15_model(model, what: str) -> None:
    """Refuse anything but a plain SD1.x MODEL, naming what was connected.

    ComfyUI picks the model family (``comfy.supported_models``) from the checkpoint's UNet; SD1.x
    is ``SD15`` (context 768, 320 base channels, 4 input channels, no temporal layers).
    """
    inner = getattr(model, "model", None)
    config = getattr(inner, "model_config", None)
    if config is None or not hasattr(model, "get_key_patches"):
        raise EMOInputError(f"{what}: expected a MODEL from Load Checkpoint (an SD1.5 "
                            f"checkpoint), got {type(model).__name__}")
    family = describe_model(model)
    families = [cls.__name__ for cls in type(config).__mro__]
    unet = getattr(config, "unet_config", {}) or {}
    problem = None
    if "SD15" not in families:
        problem = f"a {family} model"
    elif unet.get("in_channels", 4) != 4:
        problem = f"an SD1.5 variant with {unet['in_channels']} input channels ({family}; " \
                  "inpainting / instruct-pix2pix)"
    elif unet.get("use_temporal_attention"):
        problem = "an SD1.5 video model"
    if problem:
        raise EMOInputError(
            f"{what}: {problem} was connected; EMO is built on Stable Diffusion 1.5 and only "
            "takes SD1.5 checkpoints (civit.ai base model 'SD 1.5') and SD1.5 LoRAs. Load an "
            "SD1.5 checkpoint with Load Checkpoint and connect its MODEL")


class _PatchedUNet:
    """LDM-named UNet weights of one MODEL, each computed with its patches on demand."""

    def __init__(self, model, what: str, unet_config: Mapping):
        check_sd15_model(model, what)
        self.what = what
        # {full key: [(weight, convert_func), *patches]}: references only, nothing is copied.
        self.entries = model.get_key_patches(UNET_PREFIX)
        ldm_keys = {"model." + k: tuple(v[0][0].shape) for k, v in self.entries.items()}
        check_sd15_unet(ldm_keys, unet_config, what)
        wanted = spatial_shapes(unet_config)
        names = ldm_to_diffusers_names(ldm_keys, unet_config)
        self.names = {d: f.removeprefix("model.") for f, d in names.items() if d in wanted}
        self.shapes = {d: tuple(self.entries[k][0][0].shape) for d, k in self.names.items()}
        self.patched = sum(1 for k in self.names.values() if len(self.entries[k]) > 1)
        self.skipped = sorted(set(self.entries) - set(self.names.values()))

    @torch.no_grad()
    def get(self, key: str) -> torch.Tensor:
        """fp32 CPU weight for diffusers name ``key`` with all of ComfyUI's patches applied."""
        full = self.names[key]
        (weight, convert), *patches = self.entries[full]
        value = convert(weight.to("cpu", torch.float32, copy=True), inplace=True)
        if patches:
            value = bridge.calculate_lora_weight(patches, value, full)
        return value


class ModelDeltaSource:
    """``style_model - base_model`` (or ``style_model - EMO`` without a base) per tensor."""

    def __init__(self, style_model, base_model, unet_config: Mapping):
        self.style = _PatchedUNet(style_model, "style_model", unet_config)
        self.base = (_PatchedUNet(base_model, "base_model", unet_config)
                     if base_model is not None else None)
        self.needs_current = self.base is None
        self.skipped = list(self.style.skipped)
        self.what = (f"style_model ({describe_model(style_model)}, {self.style.patched} patched "
                     f"tensors)" + (f" - base_model ({describe_model(base_model)}, "
                                    f"{self.base.patched} patched)" if self.base else ""))
        if self.base is not None and self.base.shapes != self.style.shapes:
            raise EMOInputError("style_model and base_model have different UNets; the base "
                                "must be the checkpoint the style was made from (plain SD1.5)")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self.style.shapes)

    def delta(self, key: str, current: torch.Tensor, device) -> torch.Tensor:
        style = self.style.get(key)
        base = self.base.get(key) if self.base is not None else current.detach().to("cpu")
        style -= base.to(torch.float32)
        return style.to(device)
