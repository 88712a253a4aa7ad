"""The SD1.5 spatial parameters of a UNet config: what a style is allowed to change."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache

import torch
from diffusers import UNet2DConditionModel


@lru_cache(maxsize=8)
def _shapes(config_json: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    # A plain diffusers UNet on the meta device: names and shapes only, no memory, no init cost.
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads(config_json))
    return tuple((k, tuple(v.shape)) for k, v in unet.state_dict().items())


def spatial_shapes(config: Mapping) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of every parameter of a plain ``UNet2DConditionModel(config)``.

    EMO's extra modules (temporal, audio, reference cross-attention) are not in it, so a name
    outside this set is never touched by a style.
    """
    plain = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    return dict(_shapes(json.dumps(plain, sort_keys=True, default=list)))
