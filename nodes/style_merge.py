"""Add an SD1.5 fine-tune's look to the EMO Backbone and ReferenceNet (weight difference).

``w_emo += strength * (w_style - w_base)`` on every SD1.5 UNet weight both UNets share; EMO's own
layers (temporal, audio, speed, reference attention) are untouched. Without a base model the
style weights are blended in directly: ``w_emo += strength * (w_style - w_emo)``.
"""

from __future__ import annotations

import logging

import torch

from emo_core.errors import EMOInputError

from . import comfy_bridge as bridge

logger = logging.getLogger(__name__)


def _diffusers_unet(model, config, what: str) -> dict[str, torch.Tensor]:
    from emo_core.io.conversion import ldm_to_diffusers_unet

    try:
        return ldm_to_diffusers_unet(bridge.patched_unet_state_dict(model), config)
    except EMOInputError as error:
        raise EMOInputError(f"{what}: not an SD1.5 model ({error}); connect an SD1.5 "
                            "checkpoint") from error


@torch.no_grad()
def _apply(unet: torch.nn.Module, style: dict, base: dict | None, strength: float) -> int:
    """Shift ``unet``'s parameters in place; returns how many tensors changed."""
    changed = 0
    for name, param in unet.state_dict(keep_vars=True).items():
        if name not in style or style[name].shape != param.shape:
            continue
        reference = base[name] if base is not None else param.detach().float().cpu()
        delta = (style[name] - reference).to(param.device, torch.float32)
        param.copy_((param.float() + strength * delta).to(param.dtype))
        changed += 1
    return changed


def merge_style(models, style_model, base_model, strength: float) -> None:
    """models: ``EMOModels``; style_model / base_model: core MODEL values (SD1.5)."""
    config = models.backbone.unet.config
    style = _diffusers_unet(style_model, config, "style_model")
    base = _diffusers_unet(base_model, config, "base_model") if base_model is not None else None
    for unet in (models.backbone.unet, models.reference_net.unet):
        changed = _apply(unet, style, base, float(strength))
        if changed == 0:
            raise EMOInputError("style_model: no weight matched the EMO UNets; connect an SD1.5 "
                                "model (SDXL/Flux models do not fit EMO)")
        logger.info("style merge: %d tensors of %s shifted (strength %.2f)", changed,
                    type(unet).__name__, strength)
