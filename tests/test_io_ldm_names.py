"""Tiny SD1.5-layout models written under original LDM (single-file / civit.ai) key names.

The inverse renames below are written independently of diffusers' converter (from the LDM
layout: input_blocks / middle_block / output_blocks, ResBlock in_layers/out_layers, VAE
down.i.block.j / mid.block_1 / 1x1-conv attention), so going LDM -> diffusers through the real
loader and comparing with the source model is a real check of the loader. Other test files import
the helpers from here.
"""

from __future__ import annotations

import re

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from emo_core.io.conversion import (
    compare_state_dicts,
    ldm_to_diffusers_unet,
    ldm_to_diffusers_vae,
)

# SD1.5's block structure with small widths (norm groups must divide every width).
TINY_UNET = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [32, 64, 64, 64], "norm_num_groups": 32, "cross_attention_dim": 32,
    "attention_head_dim": 2,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
TINY_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
    "block_out_channels": [32, 32], "norm_num_groups": 32, "sample_size": 32,
    "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
}

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"),
           ("conv_shortcut", "skip_connection"))
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _resnet_inner(rest: str) -> str:
    for new, old in _RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new):]
    raise KeyError(rest)


def _unet_key(key: str, per_block: int, up_has_attn: list[bool]) -> str:
    head, _, tail = key.rpartition(".")
    if head in _UNET_TOP:
        return f"{_UNET_TOP[head]}.{tail}"
    n = per_block + 1
    if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * n + int(m[2])}.0.{_resnet_inner(m[3])}"
    if m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * n + int(m[2])}.1.{m[3]}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * n + per_block}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet_inner(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"output_blocks.{int(m[1]) * n + int(m[2])}.0.{_resnet_inner(m[3])}"
    if m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"output_blocks.{int(m[1]) * n + int(m[2])}.1.{m[3]}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        slot = 2 if up_has_attn[int(m[1])] else 1
        return f"output_blocks.{int(m[1]) * n + per_block}.{slot}.conv.{m[2]}"
    raise KeyError(key)


def unet_to_ldm(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """diffusers UNet -> ``model.diffusion_model.*`` names of an original SD1.5 checkpoint."""
    cfg = unet.config
    up_attn = ["CrossAttn" in t for t in cfg.up_block_types]
    return {
        "model.diffusion_model." + _unet_key(k, cfg.layers_per_block, up_attn): v.clone()
        for k, v in unet.state_dict().items()
    }


_VAE_ATTN = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"),
             ("to_out.0", "proj_out"))


def _vae_key(key: str, value: torch.Tensor, n_up: int) -> tuple[str, torch.Tensor]:
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
        rest = m[2]
        for new, old in _VAE_ATTN:
            rest = rest.replace(new + ".", old + ".")
        if value.ndim == 2:  # LDM stores these projections as 1x1 convolutions
            value = value[:, :, None, None]
        return f"{m[1]}.mid.attn_1.{rest}", value
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}", value
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}", value
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.{m[2]}", value
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(.+)", key):
        return f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}", value
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
        return f"decoder.up.{n_up - 1 - int(m[1])}.upsample.{m[2]}", value
    return key, value


def vae_to_ldm(vae: AutoencoderKL, prefix: str = "first_stage_model.") -> dict:
    """diffusers VAE -> LDM names (``first_stage_model.*`` inside a full checkpoint)."""
    n_up = len(vae.config.up_block_types)
    out = {}
    for key, value in vae.state_dict().items():
        new_key, new_value = _vae_key(key, value.clone(), n_up)
        out[prefix + new_key] = new_value
    return out


def tiny_unet(seed: int = 0, config: dict | None = None) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(**(config or TINY_UNET)).eval()


def tiny_vae(seed: int = 0, config: dict | None = None) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(**(config or TINY_VAE)).eval()


def test_ldm_unet_names_convert_back_exactly():
    unet = tiny_unet()
    ldm = unet_to_ldm(unet)
    # The LDM names really differ (otherwise the test would prove nothing).
    assert "model.diffusion_model.input_blocks.4.1.proj_in.weight" in ldm
    assert not any("down_blocks" in k for k in ldm)
    converted = ldm_to_diffusers_unet(ldm, TINY_UNET)
    source = unet.state_dict()
    assert compare_state_dicts(source, converted).ok
    for key, value in source.items():
        assert torch.equal(converted[key], value), key


def test_ldm_vae_names_convert_back_exactly():
    vae = tiny_vae()
    ldm = vae_to_ldm(vae)
    assert ldm["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4
    converted = ldm_to_diffusers_vae(ldm, TINY_VAE)
    source = vae.state_dict()
    assert compare_state_dicts(source, converted).ok
    for key, value in source.items():
        assert torch.equal(converted[key], value), key
