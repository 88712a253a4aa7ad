"""``python -m emo_core convert-echomimic``: EchoMimic v1's ``pretrained_weights/`` -> one checkpoint.

Reads (``torch.load(weights_only=True)`` / safetensors) ``reference_unet.pth``,
``denoising_unet.pth`` + ``motion_module.pth`` (``--acc``: ``denoising_unet_acc.pth`` +
``motion_module_acc.pth``), ``face_locator.pth``, ``audio_processor/whisper_tiny.pt``, the
base ``sd-image-variations-diffusers/unet/config.json`` and the ``sd-vae-ft-mse/`` VAE, and
writes one ``.safetensors`` checkpoint of the echomimic family whose config carries the
variant and EchoMimic's sampling defaults (normal: 30 steps, CFG 2.5; acc: 6 steps, no CFG).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .help_format import HelpFormatter

UNET_CONFIG = "sd-image-variations-diffusers/unet/config.json"
VAE_FOLDER = "sd-vae-ft-mse"
VAE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
WHISPER = "audio_processor/whisper_tiny.pt"
FILES = {"normal": ("denoising_unet.pth", "motion_module.pth"),
         "acc": ("denoising_unet_acc.pth", "motion_module_acc.pth")}
SOURCE = ("EchoMimic v1's pretrained_weights/ folder (Hugging Face BadToBest/EchoMimic, "
          "with sd-image-variations-diffusers/ and sd-vae-ft-mse/ beside it)")
# Files that mark other models' download folders: (file, what it is, what to do).
OTHER_LAYOUTS = (
    ("hallo/net.pth", "Hallo's pretrained_models/", "use `python -m emo_core convert-hallo`"),
    ("hallo2/net.pth", "Hallo2's pretrained_models/", "use `python -m emo_core convert-hallo`"),
    ("net.pth", "a Hallo net.pth folder", "use `python -m emo_core convert-hallo`"),
    ("pose_encoder.pth", "EchoMimic v2 (pose_encoder.pth)", "EchoMimic v2 is not supported"),
    ("pose_guider.pth", "AnimateAnyone (pose_guider.pth)", "AnimateAnyone is not supported"),
    ("v-express/v_kps_guider.bin", "V-Express (v_kps_guider.bin)", "V-Express is not supported"),
    ("v_kps_guider.bin", "V-Express (v_kps_guider.bin)", "V-Express is not supported"),
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert-echomimic", help="convert EchoMimic v1 weights (pretrained_weights/) to one "
        "checkpoint", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--pretrained-weights", type=Path, required=True, metavar="DIR",
                        help="EchoMimic's pretrained_weights/ folder")
    parser.add_argument("--acc", action="store_true",
                        help="convert the accelerated weights (denoising_unet_acc.pth + "
                             "motion_module_acc.pth: 6 steps, no CFG) instead of the normal ones")
    parser.add_argument("--unet-kwargs", type=Path, metavar="FILE.json",
                        help="EchoMimic unet_additional_kwargs as JSON (omitted: the values of "
                             "EchoMimic's configs/inference/inference_v2.yaml)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.safetensors",
                        help="the checkpoint to write (put it in ComfyUI/models/emo/)")
    return parser


def run(args) -> int:
    kwargs = None
    if args.unet_kwargs is not None:
        from ..io.pretrained_sources import read_config

        kwargs = read_config(args.unet_kwargs, "--unet-kwargs",
                            "pass EchoMimic's unet_additional_kwargs as JSON")
    out = convert_echomimic(args.pretrained_weights, args.out, acc=args.acc, unet_kwargs=kwargs)
    print(f"EMO checkpoint (EchoMimic {'acc' if args.acc else 'normal'}): {out}")
    return 0


def check_layout(root: Path, variant: str) -> dict[str, Path]:
    """The EchoMimic files, or an ``EMOInputError`` naming what the folder is instead."""
    from ..errors import EMOInputError

    if not root.is_dir():
        raise EMOInputError(f"--pretrained-weights {str(root)!r} is not a folder; pass {SOURCE}")
    denoising, motion = FILES[variant]
    wanted = {"reference": "reference_unet.pth", "denoising": denoising, "motion": motion,
              "face_locator": "face_locator.pth", "whisper": WHISPER, "unet_config": UNET_CONFIG,
              "vae_config": f"{VAE_FOLDER}/config.json"}
    missing = [name for name in wanted.values() if not (root / name).is_file()]
    if not missing:
        return {key: root / name for key, name in wanted.items()}
    for marker, what, todo in OTHER_LAYOUTS:
        if (root / marker).is_file():
            raise EMOInputError(f"{str(root)!r} is {what}, not EchoMimic v1's pretrained_weights/;"
                                f" {todo}")
    other = next(kind for kind in FILES if kind != variant)
    hint = ""
    if all((root / name).is_file() for name in FILES[other]):
        hint = f" (the {other} pair is there: {'add' if other == 'acc' else 'drop'} --acc)"
    raise EMOInputError(f"{str(root)!r} lacks {', '.join(missing)}{hint}; pass {SOURCE}")


def convert_echomimic(pretrained: Path, out: Path, acc: bool = False,
                      unet_kwargs: dict | None = None) -> Path:
    """Convert and write atomically; returns the written path."""
    from ..errors import EMOInputError

    pretrained, out = Path(pretrained), Path(out)
    if out.suffix.lower() != ".safetensors":
        raise EMOInputError(f"--out {str(out)!r} must be a .safetensors file")
    variant = "acc" if acc else "normal"
    paths = check_layout(pretrained, variant)
    _refuse_overwriting_inputs(out, pretrained)
    tensors, configs = read_and_convert(paths, variant, unet_kwargs)
    from ..io.echomimic_checkpoint import save_echomimic

    return save_echomimic(tensors, configs, out)


def _refuse_overwriting_inputs(out: Path, pretrained: Path) -> None:
    from ..errors import EMOInputError

    target = out.resolve()
    root = pretrained.resolve()
    if target == root or root in target.parents:
        raise EMOInputError(f"--out {str(out)!r} is inside --pretrained-weights {str(pretrained)!r}"
                            "; write the checkpoint elsewhere (a command never writes into its "
                            "inputs)")


def read_and_convert(paths: dict[str, Path], variant: str, unet_kwargs: dict | None):
    """Read every source file, convert, check strictly: (tensors, configs)."""
    import torch

    from ..errors import CheckpointError
    from ..io.conversion import compare_state_dicts, require_match
    from ..io.echomimic import echomimic_configs, echomimic_to_pack, merge_denoiser
    from ..io.pretrained_sources import find_file, read_config
    from ..io.safe_load import load_state_dict
    from ..io.whisper import read_openai_whisper
    from ..models.echomimic_models import EchoMimicModels

    hint = "the config files do not match"
    unet_config = read_config(paths["unet_config"], UNET_CONFIG, f"pass {SOURCE}")
    vae_config = read_config(paths["vae_config"], f"{VAE_FOLDER}/config.json", f"pass {SOURCE}")
    whisper_config, whisper, _dropped = read_openai_whisper(paths["whisper"])
    face = load_state_dict(paths["face_locator"])
    denoiser, _overridden = merge_denoiser(load_state_dict(paths["denoising"]),
                                           load_state_dict(paths["motion"]))
    vae_file = find_file(paths["vae_config"].parent, VAE_WEIGHTS, "VAE weights", f"pass {SOURCE}")
    configs = echomimic_configs(unet_config, face, whisper_config, vae_config, variant,
                                unet_kwargs)
    tensors = echomimic_to_pack(load_state_dict(paths["reference"]), denoiser, face, whisper,
                                load_state_dict(vae_file))
    try:
        with torch.device("meta"):
            model = EchoMimicModels.from_configs(configs)
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"EchoMimic weights in {str(paths['reference'].parent)!r} do not "
                              f"fit the settings given: {error}; {hint}") from error
    from ..io.validate import check_finite, check_float_dtypes

    where = f"EchoMimic weights in {str(paths['reference'].parent)!r}"
    check_float_dtypes(model.state_dict(), {k: v.dtype for k, v in tensors.items()}, where,
                       f"pass {SOURCE}")
    check_finite(tensors, where, f"download the weights again ({SOURCE})")
    require_match(compare_state_dicts(model.state_dict(), tensors),
                  f"EchoMimic weights in {str(paths['reference'].parent)!r}",
                  "the files do not belong together, or the unet kwargs differ (pass "
                  "--unet-kwargs with EchoMimic's unet_additional_kwargs)")
    return tensors, configs
