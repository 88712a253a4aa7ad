"""Architecture presets: the real SD1.5 numbers and a tiny CPU-test variant of every component.

``sd15`` reads the shipped diffusers configs in ``emo_core/io/configs`` (the single source of the
SD1.5 UNet / VAE numbers, no network ever). ``tiny`` keeps the exact topology (4 resolution
levels, 2 layers per block: 21 temporal sites, 16 audio sites, latent factor 8) with small widths;
head size stays 32 (fewer heads instead of narrower heads, which is 3x slower on CPU).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import torch
from transformers import Wav2Vec2Config

logger = logging.getLogger(__name__)

PRESETS = ("sd15", "tiny")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "io" / "configs"

# wav2vec2 CNN feature encoder: 320x downsampling of 16 kHz audio -> 50 Hz (both presets).
_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)

_TINY_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "block_out_channels": [32, 64, 64, 64],
    "layers_per_block": 2,
    # diffusers' ``attention_head_dim`` is really the head COUNT: heads (1, 2, 2, 2) -> size 32.
    "attention_head_dim": [1, 2, 2, 2],
    "cross_attention_dim": 64,
    "norm_num_groups": 32,
}

_TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 16, 32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")


def _shipped_config(name: str) -> dict:
    """A shipped diffusers config without its ``_class_name`` / ``_diffusers_version`` keys."""
    path = CONFIG_DIR / name
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    return {key: value for key, value in config.items() if not key.startswith("_")}


def unet_config(preset: str = "sd15") -> dict:
    """``UNet2DConditionModel`` config: SD1.5 (859.5 M parameters) or tiny."""
    _check_preset(preset)
    if preset == "sd15":
        return _shipped_config("sd15_unet.json")
    return copy.deepcopy(_TINY_UNET)


def vae_config(preset: str = "sd15") -> dict:
    """``AutoencoderKL`` config; both presets have 4 blocks (factor 8) and 4 latent channels."""
    _check_preset(preset)
    if preset == "sd15":
        return _shipped_config("sd15_vae.json")
    return copy.deepcopy(_TINY_VAE)


def wav2vec2_config(preset: str = "sd15") -> Wav2Vec2Config:
    """``Wav2Vec2Config``: facebook/wav2vec2-base-960h numbers, or a tiny 50 Hz equivalent."""
    _check_preset(preset)
    common = {
        "conv_kernel": list(_CONV_KERNEL),
        "conv_stride": list(_CONV_STRIDE),
        "feat_extract_norm": "group",
        "do_stable_layer_norm": False,
        "vocab_size": 32,
    }
    if preset == "sd15":
        return Wav2Vec2Config(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, conv_dim=[512] * 7, num_conv_pos_embeddings=128,
            num_conv_pos_embedding_groups=16, **common,
        )
    return Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=1, intermediate_size=64,
        conv_dim=[32] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        **common,
    )


def emo_component_configs(preset: str = "sd15") -> dict[str, dict]:
    """Constructor kwargs per component plus the ``context`` shape; see ``EMOModels.from_configs``.

    Audio projection input is ``(b, f, 5, L, C)``: the 5-frame window of the stacked hidden states
    of every wav2vec transformer layer (L = num_hidden_layers, C = hidden_size), as in Hallo.
    """
    _check_preset(preset)
    unet = unet_config(preset)
    wav = wav2vec2_config(preset)
    sd15 = preset == "sd15"
    audio_dim = 768 if sd15 else 64
    speed_dim = 768 if sd15 else 64
    first_width = unet["block_out_channels"][0]
    return {
        "reference_net": {"unet": copy.deepcopy(unet)},
        "backbone": {
            "unet": copy.deepcopy(unet),
            "audio_token_dim": audio_dim,
            "speed_token_dim": speed_dim,
            "motion_num_attention_heads": 8 if sd15 else 1,
            "motion_max_frames": 32,
            "motion_frames": 4,
            "reference_attention": "concat",
        },
        "face_locator": {
            "conditioning_channels": 1,
            "block_out_channels": [16, 32, 96, 256] if sd15 else [8, 16, 16, 32],
            "embedding_channels": first_width,
        },
        "audio_projection": {
            "seq_len": 5,
            "blocks": wav.num_hidden_layers,
            "channels": wav.hidden_size,
            "intermediate_dim": 512 if sd15 else 64,
            "output_dim": audio_dim,
            "context_tokens": 32 if sd15 else 4,
        },
        "speed_encoder": {
            "bucket_centers": [float(c) for c in range(0, 17, 2)],
            "bucket_radii": [2.0] * 9,
            "window": 2,
            "hidden_dim": 512 if sd15 else 32,
            "output_dim": speed_dim,
            "num_tokens": 1,
        },
        "context": {"tokens": 1, "dim": unet["cross_attention_dim"]},
        # What the Backbone predicts (SD1.5 weights: epsilon); the trainer records its target.
        "sampling": {"prediction_type": "epsilon"},
    }


def build_emo_models(preset: str = "tiny", seed: int = 0, with_vae: bool = True):
    """Random-initialised :class:`EMOModels` for ``preset`` (reproducible from ``seed``).

    Every new branch (reference-cross, audio, temporal, speed, face) is zero-initialised, so the
    result behaves like its UNet until trained or loaded. Weights are never downloaded.
    """
    from .emo_models import EMOModels  # local import: emo_models imports this module

    configs = emo_component_configs(preset)
    if with_vae:
        configs["vae"] = vae_config(preset)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        models = EMOModels.from_configs(configs)
    finally:
        torch.random.set_rng_state(state)
    logger.info("built %s EMO models (seed %d, vae=%s)", preset, seed, with_vae)
    return models
