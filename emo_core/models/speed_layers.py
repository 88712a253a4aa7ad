"""Add EMO's speed layers to a checkpoint that has none (a converted Hallo checkpoint).

The new parts are the speed encoder and, inside every temporal transformer block, the speed
cross-attention ``attention_blocks.2`` + ``norms.2`` (see ``temporal.py``). Their output
projection starts at zero, so the result computes exactly what the source computes until
``train --stage 3`` trains them; every other tensor is copied unchanged.
"""

from __future__ import annotations

import copy
import logging

import torch

logger = logging.getLogger(__name__)

# The speed cross-attention inside a temporal block (``temporal.py``): its names in the state dict.
SPEED_PARTS = (".attention_blocks.2.", ".norms.2.")


def speed_encoder_config(token_dim: int) -> dict:
    """EMO's speed encoder (9 buckets, +-2 frame window, 1 token) for ``token_dim``-wide tokens;
    SD1.5 size (768) gets the EMO preset's 512-wide MLP."""
    return {
        "bucket_centers": [float(c) for c in range(0, 17, 2)],
        "bucket_radii": [2.0] * 9,
        "window": 2,
        "hidden_dim": 512 if token_dim >= 512 else token_dim,
        "output_dim": int(token_dim),
        "num_tokens": 1,
    }


def is_speed_parameter(name: str) -> bool:
    """Whether an ``EMOModels`` state-dict name belongs to the speed layers."""
    return name.startswith("speed_encoder.") or (
        ".motion_modules." in name and any(part in name for part in SPEED_PARTS))


def with_speed_layers(models, seed: int = 0, token_dim: int | None = None):
    """A new ``EMOModels`` = ``models`` + zero-output speed layers (``token_dim`` default: the
    UNet's cross-attention width). ``models`` must have no speed layers yet."""
    from .emo_models import EMOModels

    if models.speed_encoder is not None or models.backbone.config.speed_token_dim:
        raise ValueError("the checkpoint already has speed layers "
                         f"(speed_token_dim = {models.backbone.config.speed_token_dim})")
    dim = int(token_dim or models.backbone.unet.config.cross_attention_dim)
    configs = copy.deepcopy(models.component_configs())
    configs["backbone"]["speed_token_dim"] = dim
    configs["speed_encoder"] = speed_encoder_config(dim)
    with torch.random.fork_rng(devices=[]):  # the new layers' random parts, reproducibly
        torch.manual_seed(seed)
        out = EMOModels.from_configs(configs)
    source = models.state_dict()
    missing, unexpected = out.load_state_dict(source, strict=False)
    foreign = [k for k in missing if not is_speed_parameter(k)]
    if unexpected or foreign or not missing:
        raise ValueError(f"speed-layer model does not fit the source: missing {foreign[:5]}, "
                         f"unexpected {unexpected[:5]}")
    out.prediction_type = models.prediction_type
    logger.info("added %d speed-layer tensors (%.3f M parameters)", len(missing),
                sum(out.state_dict()[k].numel() for k in missing) / 1e6)
    dtype = next(models.parameters()).dtype
    return out if dtype == torch.float32 else out.to(dtype)
