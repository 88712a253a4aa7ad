"""Hallo ``net.pth`` -> EMO checkpoint (Hallo variant): pure functions over state dicts.

Hallo (fudan-generative-vision/hallo) stores its trained parts in one ``net.pth``: the state dict
of its inference ``Net`` wrapper with prefixes ``reference_unet.``, ``denoising_unet.`` (incl.
``motion_modules`` and ``audio_modules``), ``face_locator.``, ``imageproj.``, ``audioproj.``.
Every tensor maps by a prefix rename onto the EMO component that computes the same thing; the
component configs come from the base ``unet/config.json``, Hallo's ``unet_additional_kwargs``
(its inference config) and the tensor shapes. Nothing here reads files.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch

from ..errors import CheckpointError
from .conversion import _shape

# Hallo's released configs/inference/default.yaml: unet_additional_kwargs.
HALLO_UNET_KWARGS = {
    "use_inflated_groupnorm": True,
    "unet_use_cross_frame_attention": False,
    "unet_use_temporal_attention": False,
    "use_motion_module": True,
    "use_audio_module": True,
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
    "audio_attention_dim": 768,
    "stack_enable_blocks_name": ["up", "down", "mid"],
    "stack_enable_blocks_depth": [0, 1, 2, 3],
}

# Hallo's released sampling settings (configs/inference/default.yaml + scripts/inference.py):
# DDIM with the zero-SNR overrides; inference.py's later "scaled_linear" assignment is dead code.
HALLO_SCHEDULER = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "linear", "clip_sample": False, "steps_offset": 1,
    "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}
HALLO_SAMPLING = {
    "prediction_type": "v_prediction",
    "variant": "hallo",
    "scheduler": HALLO_SCHEDULER,
    "steps": 40,
    "guidance_scale": 3.5,
    "clip_frames": 16,
    "motion_frames": 2,
    "fps": 25,
    # pose/face/lip weight: inference.py's CLI defaults (1.0) override default.yaml's 1.1
    "motion_scale": [1.0, 1.0, 1.0],
    "latent_scale": 0.18215,
}

# net.pth prefix -> EMO component prefix.
PREFIX_MAP = {
    "reference_unet.": "reference_net.unet.",
    "denoising_unet.": "backbone.unet.",
    "face_locator.": "face_locator.embedding.",
    "imageproj.": "image_projection.",
    "audioproj.": "audio_projection.",
}

# Markers of other talking-head / animation checkpoints, for the refusal message.
_OTHER_MODELS = (
    ("pose_guider.", "AnimateAnyone (pose_guider)"),
    ("v_kps_guider.", "V-Express (v_kps_guider)"),
    ("audio_projection.", "V-Express (audio_projection)"),
    ("reference_net.", "V-Express (reference_net)"),
    ("motion_module.", "EchoMimic / AnimateDiff (bare motion module)"),
)


def _prefix_counts(keys) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in keys:
        head = key.split(".", 1)[0] + "."
        counts[head] = counts.get(head, 0) + 1
    return counts


def describe_found(keys) -> str:
    """Short user-level summary of a state dict's key layout."""
    counts = _prefix_counts(keys)
    top = ", ".join(f"{p}* ({n})" for p, n in sorted(counts.items(), key=lambda x: -x[1])[:6])
    for marker, name in _OTHER_MODELS:
        if marker in counts:
            return f"this looks like {name}: prefixes {top}"
    if "conv_in." in counts and "down_blocks." in counts:
        kind = ("a bare UNet with audio modules (EchoMimic-style denoising_unet.pth)"
                if any(".audio_modules." in k for k in keys) else
                "a bare UNet (AnimateAnyone / EchoMimic denoising_unet.pth or reference_unet.pth)")
        return f"this looks like {kind}: prefixes {top}"
    if "face_locator." in counts and "denoising_unet." not in counts:
        return f"this looks like a lone face locator (EchoMimic face_locator.pth): prefixes {top}"
    return f"found prefixes {top or 'none'}"


def check_hallo_layout(state_dict: Mapping) -> None:
    """Refuse anything that is not a complete Hallo ``net.pth``, naming what was found."""
    counts = _prefix_counts(state_dict)
    missing = [p for p in PREFIX_MAP if p not in counts]
    foreign = [p for p in counts if p not in PREFIX_MAP]
    if not missing and not foreign:
        if not any(".audio_modules." in k for k in state_dict):
            raise CheckpointError(
                "net.pth has Hallo's prefixes but its denoising_unet has no audio_modules; "
                "this is not a Hallo net.pth (AnimateAnyone-style denoiser?)")
        return
    if missing and len(missing) < len(PREFIX_MAP) and not foreign:
        detail = f"it lacks {', '.join(missing)} (has {describe_found(state_dict)})"
    else:
        detail = describe_found(state_dict)
    raise CheckpointError(
        f"net.pth is not a Hallo net.pth: {detail}. Expected the prefixes "
        f"{', '.join(PREFIX_MAP)} of Hallo's pretrained_models/hallo/net.pth "
        "(Hugging Face fudan-generative-ai/hallo); download it again if it was cut short.")


def _check_kwarg_types(kwargs: object, what: str) -> None:
    """Types first: a list, a string where a dict belongs or zero heads would crash later."""
    hint = ("pass Hallo's unet_additional_kwargs (configs/inference/default.yaml) as a JSON "
            "object")
    if not isinstance(kwargs, Mapping):
        raise CheckpointError(f"{what} is a {type(kwargs).__name__}, not an object of settings; "
                              f"{hint}")
    mm = kwargs.get("motion_module_kwargs", {})
    if not isinstance(mm, Mapping):
        raise CheckpointError(f"{what}: motion_module_kwargs is a {type(mm).__name__}, not an "
                              f"object; {hint}")
    for name, value in (("motion_module_kwargs.num_attention_heads",
                         mm.get("num_attention_heads", 8)),
                        ("motion_module_kwargs.temporal_position_encoding_max_len",
                         mm.get("temporal_position_encoding_max_len", 32)),
                        ("audio_attention_dim", kwargs.get("audio_attention_dim", 768))):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CheckpointError(f"{what}: {name} = {value!r} must be a whole number of at "
                                  f"least 1; {hint}")
    for name, value, kind in (("stack_enable_blocks_name", kwargs.get("stack_enable_blocks_name"),
                               str),
                              ("stack_enable_blocks_depth",
                               kwargs.get("stack_enable_blocks_depth"), int),
                              ("motion_module_kwargs.attention_block_types",
                               mm.get("attention_block_types"), str)):
        if value is not None and (not isinstance(value, list) or not all(
                isinstance(v, kind) and not isinstance(v, bool) for v in value)):
            raise CheckpointError(f"{what}: {name} = {value!r} must be a list of "
                                  f"{kind.__name__}; {hint}")


def check_unet_kwargs(kwargs: Mapping, what: str = "Hallo unet kwargs") -> None:
    """Refuse Hallo UNet settings this variant does not reproduce (``what`` names them)."""
    _check_kwarg_types(kwargs, what)
    mm = kwargs.get("motion_module_kwargs", {})
    wanted = [
        ("use_motion_module", kwargs.get("use_motion_module"), True),
        ("use_audio_module", kwargs.get("use_audio_module"), True),
        ("motion_module_type", kwargs.get("motion_module_type"), "Vanilla"),
        ("motion_module_mid_block", kwargs.get("motion_module_mid_block"), True),
        ("motion_module_decoder_only", kwargs.get("motion_module_decoder_only"), False),
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
        ("stack_enable_blocks_name", sorted(kwargs.get("stack_enable_blocks_name") or []),
         ["down", "mid", "up"]),
    ]
    bad = [f"{name} = {got!r} (supported: {want!r})" for name, got, want in wanted if got != want]
    depths = set(kwargs.get("stack_enable_blocks_depth") or [])
    if not {0, 1, 2, 3} <= depths:
        bad.append(f"stack_enable_blocks_depth = {sorted(depths)} (supported: all of 0..3)")
    if bad:
        raise CheckpointError(f"{what}: settings not supported by the EMO Hallo variant: "
                              + "; ".join(bad))


def hallo_configs(state_dict: Mapping, unet_config: Mapping, unet_kwargs: Mapping | None = None,
                  wav2vec_config: Mapping | None = None, vae_config: Mapping | None = None) -> dict:
    """EMO component configs (``EMOModels.from_configs`` input) for a Hallo ``net.pth``."""
    kwargs = copy.deepcopy(dict(unet_kwargs or HALLO_UNET_KWARGS))
    check_unet_kwargs(kwargs)
    unet = {k: v for k, v in unet_config.items() if not k.startswith("_")}
    mm = kwargs["motion_module_kwargs"]
    audio_dim = int(kwargs.get("audio_attention_dim", 768))
    # Hallo's audio modules are heads x (block in_channels // heads) wide, narrower than the
    # site in some blocks: read each width from its proj_in, keyed by module name.
    inner = {k[len("denoising_unet."):-len(".proj_in.weight")]: int(_shape(v)[0])
             for k, v in state_dict.items()
             if k.startswith("denoising_unet.") and ".audio_modules." in k
             and k.endswith(".proj_in.weight")}
    backbone = {
        "unet": unet, "audio_token_dim": audio_dim, "speed_token_dim": 0,
        "motion_num_attention_heads": int(mm.get("num_attention_heads", 8)),
        "motion_max_frames": int(mm.get("temporal_position_encoding_max_len", 32)),
        "motion_frames": HALLO_SAMPLING["motion_frames"], "reference_attention": "concat",
        "variant": "hallo", "hallo": {"audio_inner_dims": inner, "motion_mode": "train"},
    }
    return {
        "reference_net": {"unet": unet},
        "backbone": backbone,
        "face_locator": _face_locator_config(state_dict),
        "audio_projection": _audio_projection_config(state_dict, wav2vec_config),
        "image_projection": _image_projection_config(state_dict),
        "context": {"tokens": 1, "dim": int(unet.get("cross_attention_dim", 768))},
        "sampling": copy.deepcopy(HALLO_SAMPLING),
        **({"vae": dict(vae_config)} if vae_config else {}),
    }


def _face_locator_config(sd: Mapping) -> dict:
    conv_in = _shape(sd["face_locator.conv_in.weight"])
    blocks = sorted({int(k.split(".")[2]) for k in sd if k.startswith("face_locator.blocks.")})
    channels = [conv_in[0]] + [_shape(sd[f"face_locator.blocks.{i}.weight"])[0]
                               for i in blocks if i % 2]
    return {"conditioning_channels": int(conv_in[1]),
            "block_out_channels": [int(c) for c in channels],
            "embedding_channels": int(_shape(sd["face_locator.conv_out.weight"])[0])}


def _audio_projection_config(sd: Mapping, wav2vec_config: Mapping | None) -> dict:
    w2v = wav2vec_config or {}
    blocks = int(w2v.get("num_hidden_layers", 12))
    channels = int(w2v.get("hidden_size", 768))
    intermediate, flat = _shape(sd["audioproj.proj1.weight"])
    output_dim = _shape(sd["audioproj.norm.weight"])[0]
    if flat % (blocks * channels):
        raise CheckpointError(
            f"audioproj.proj1 takes {flat} inputs, not a multiple of wav2vec layers x hidden "
            f"size = {blocks} x {channels}; the wav2vec folder does not belong to this net.pth")
    return {"seq_len": flat // (blocks * channels), "blocks": blocks, "channels": channels,
            "intermediate_dim": int(intermediate), "output_dim": int(output_dim),
            "context_tokens": int(_shape(sd["audioproj.proj3.weight"])[0] // output_dim)}


def _image_projection_config(sd: Mapping) -> dict:
    out, embedding = _shape(sd["imageproj.proj.weight"])
    dim = _shape(sd["imageproj.norm.weight"])[0]
    return {"embedding_dim": int(embedding), "cross_attention_dim": int(dim),
            "context_tokens": int(out // dim)}


def hallo_to_emo(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename every ``net.pth`` tensor to its EMO name (each used exactly once)."""
    check_hallo_layout(state_dict)
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        prefix = next(p for p in PREFIX_MAP if key.startswith(p))
        out[PREFIX_MAP[prefix] + key[len(prefix):]] = value
    return out

