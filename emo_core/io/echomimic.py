"""EchoMimic v1 ``pretrained_weights/`` -> one EchoMimic-family checkpoint: pure functions.

Sources (EchoMimic's own file names) and where each tensor goes:

| EchoMimic file | checkpoint prefix |
|---|---|
| ``reference_unet.pth`` | ``reference_net.unet.`` (all of it; no output head, no attn2) |
| ``motion_module[_acc].pth`` then ``denoising_unet[_acc].pth`` | ``backbone.unet.`` (where both hold a key, ``denoising_unet`` wins, as EchoMimic loads it last) |
| ``face_locator.pth`` | ``face_locator.embedding.`` |
| ``audio_processor/whisper_tiny.pt`` | ``whisper.`` (encoder; ``io/whisper.py``) |
| ``sd-vae-ft-mse/`` | ``vae.`` |

The base ``sd-image-variations-diffusers/unet/config.json`` gives both UNets' architecture;
its weights are never read (EchoMimic overwrites every one of them). Strict: every denoiser,
reference, face-locator and encoder tensor of the model must come from exactly one file entry,
and every file entry must land somewhere (whisper's decoder and ``ln_post``, never run by
EchoMimic, are the only entries dropped, by rule). Nothing here reads files.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch

from ..errors import CheckpointError
from .conversion import _shape

# configs/inference/inference_v2.yaml: unet_additional_kwargs (EchoMimic v1, commit a53e970).
ECHOMIMIC_UNET_KWARGS = {
    "use_inflated_groupnorm": True,
    "unet_use_cross_frame_attention": False,
    "unet_use_temporal_attention": False,
    "use_motion_module": True,
    "cross_attention_dim": 384,
    "motion_module_resolutions": [1, 2, 4, 8],
    "motion_module_mid_block": True,
    "motion_module_decoder_only": False,
    "motion_module_type": "Vanilla",
    "motion_module_kwargs": {
        "num_attention_heads": 8,
        "num_transformer_block": 1,
        "attention_block_types": ["Temporal_Self", "Temporal_Self"],
        "temporal_position_encoding": True,
        "temporal_position_encoding_max_len": 32,
        "temporal_attention_dim_div": 1,
    },
}

# inference_v2.yaml noise_scheduler_kwargs (DDIM; eta 0).
ECHOMIMIC_SCHEDULER = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "linear", "clip_sample": False, "steps_offset": 1,
    "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}

# infer_audio2vid.py / infer_audio2vid_acc.py defaults.
_COMMON_SAMPLING = {
    "family": "echomimic", "prediction_type": "v_prediction", "scheduler": ECHOMIMIC_SCHEDULER,
    "context_frames": 12, "context_overlap": 3, "fps": 24, "seed": 420, "width": 512,
    "height": 512, "latent_scale": 0.18215, "reference_bank_dtype": "float16",
}
ECHOMIMIC_SAMPLING = {
    "normal": {**_COMMON_SAMPLING, "variant": "normal", "steps": 30, "guidance_scale": 2.5},
    "acc": {**_COMMON_SAMPLING, "variant": "acc", "steps": 6, "guidance_scale": 1.0},
}
AUDIO_FEATURE_RATIO = 3.0  # EchoMimic's attn2 output scale


def check_unet_kwargs(kwargs: Mapping) -> None:
    """Refuse EchoMimic UNet settings this family does not reproduce."""
    mm = kwargs.get("motion_module_kwargs", {}) or {}
    wanted = [
        ("use_motion_module", kwargs.get("use_motion_module"), True),
        ("motion_module_type", kwargs.get("motion_module_type"), "Vanilla"),
        ("motion_module_mid_block", kwargs.get("motion_module_mid_block"), True),
        ("motion_module_decoder_only", kwargs.get("motion_module_decoder_only"), False),
        ("motion_module_resolutions", list(kwargs.get("motion_module_resolutions") or []),
         [1, 2, 4, 8]),
        ("unet_use_temporal_attention", bool(kwargs.get("unet_use_temporal_attention")), False),
        ("unet_use_cross_frame_attention", bool(kwargs.get("unet_use_cross_frame_attention")),
         False),
        ("motion_module_kwargs.num_transformer_block", mm.get("num_transformer_block"), 1),
        ("motion_module_kwargs.attention_block_types", list(mm.get("attention_block_types", [])),
         ["Temporal_Self", "Temporal_Self"]),
        ("motion_module_kwargs.temporal_position_encoding", mm.get("temporal_position_encoding"),
         True),
        ("motion_module_kwargs.temporal_attention_dim_div",
         mm.get("temporal_attention_dim_div", 1), 1),
    ]
    bad = [f"{name} = {got!r} (supported: {want!r})" for name, got, want in wanted if got != want]
    for key in ("num_attention_heads", "temporal_position_encoding_max_len"):
        value = mm.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
            bad.append(f"motion_module_kwargs.{key} = {value!r} (a whole number 1..1024)")
    cross = kwargs.get("cross_attention_dim")
    if isinstance(cross, bool) or not isinstance(cross, int) or cross <= 0:
        bad.append(f"cross_attention_dim = {cross!r} (the whisper width, 384)")
    if bad:
        raise CheckpointError("EchoMimic unet kwargs not supported: " + "; ".join(bad))


def echomimic_configs(unet_config: Mapping, face_locator: Mapping, whisper_config: Mapping,
                      vae_config: Mapping, variant: str,
                      unet_kwargs: Mapping | None = None) -> dict:
    """``EchoMimicModels.from_configs`` input for EchoMimic weights of ``variant``."""
    if variant not in ECHOMIMIC_SAMPLING:
        raise ValueError(f"variant must be one of {sorted(ECHOMIMIC_SAMPLING)}, got {variant!r}")
    kwargs = copy.deepcopy(dict(unet_kwargs or ECHOMIMIC_UNET_KWARGS))
    check_unet_kwargs(kwargs)
    mm = kwargs["motion_module_kwargs"]
    unet = {k: v for k, v in unet_config.items() if not k.startswith("_")}
    denoiser_unet = {**unet, "cross_attention_dim": int(kwargs["cross_attention_dim"])}
    backbone = {
        "unet": denoiser_unet, "audio_token_dim": int(kwargs["cross_attention_dim"]),
        "motion_num_attention_heads": int(mm["num_attention_heads"]),
        "motion_max_frames": int(mm["temporal_position_encoding_max_len"]),
        "audio_scale": AUDIO_FEATURE_RATIO, "variant": "echomimic",
    }
    return {
        "reference_net": {"unet": unet},
        "backbone": backbone,
        "face_locator": face_locator_config(face_locator),
        "whisper": dict(whisper_config),
        "vae": {k: v for k, v in vae_config.items() if not k.startswith("_")},
        "sampling": copy.deepcopy(ECHOMIMIC_SAMPLING[variant]),
    }


def face_locator_config(sd: Mapping) -> dict:
    """``FaceLocator`` kwargs from the shapes of EchoMimic's ``face_locator.pth``."""
    try:
        conv_in = _shape(sd["conv_in.weight"])
        conv_out = _shape(sd["conv_out.weight"])
        blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith("blocks.")})
        widths = [conv_in[0]] + [_shape(sd[f"blocks.{i}.weight"])[0] for i in blocks if i % 2]
    except (KeyError, ValueError, IndexError) as error:
        raise CheckpointError(f"face_locator.pth is not EchoMimic's FaceLocator (conv_in, blocks.N, "
                              f"conv_out expected; {error!r} missing)") from error
    return {"conditioning_channels": int(conv_in[1]),
            "block_out_channels": [int(c) for c in widths],
            "embedding_channels": int(conv_out[0])}


def merge_denoiser(denoising: Mapping[str, torch.Tensor], motion: Mapping[str, torch.Tensor]
                   ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """EchoMimic's load order: motion modules first, then ``denoising_unet`` over them.
    Returns (merged, keys of ``motion`` that ``denoising`` overrides)."""
    foreign = [k for k in motion if ".motion_modules." not in k]
    if foreign:
        raise CheckpointError(f"motion_module file holds non-motion-module tensors {foreign[:3]} "
                              f"({len(foreign)}); expected EchoMimic's motion_module.pth")
    overridden = sorted(k for k in motion if k in denoising)
    return {**motion, **denoising}, overridden


def echomimic_to_pack(reference: Mapping, denoiser: Mapping, face_locator: Mapping,
                      whisper: Mapping, vae: Mapping) -> dict[str, torch.Tensor]:
    """All tensors under their checkpoint names (each source entry used once)."""
    out: dict[str, torch.Tensor] = {}
    for prefix, tensors in (("reference_net.unet.", reference), ("backbone.unet.", denoiser),
                            ("face_locator.embedding.", face_locator), ("whisper.", whisper),
                            ("vae.", vae)):
        for key, value in tensors.items():
            out[prefix + key] = value
    return out
