"""``python -m emo_core init-checkpoint``: build an untrained EMO checkpoint from public weights.

``--from-hallo FILE`` instead starts from a converted Hallo checkpoint (``convert-hallo``): every
Hallo tensor is kept and EMO's speed layers (speed encoder + the speed cross-attention in each
temporal block) are added with a zero output, so the file computes exactly what Hallo computes
until ``train --stage 3`` trains those layers.

Otherwise the SD1.5 UNet becomes both ReferenceNet and Backbone (every weight copied exactly), the
AnimateDiff motion module fills the temporal modules, and every new EMO branch (audio, speed,
face locator, reference cross-attention) starts at zero, so the result animates nothing yet: it is
the starting point for training, or a container to load trained EMO branches into. The VAE is taken
from --vae, else from the SD1.5 source when it has one.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .help_format import HelpFormatter

logger = logging.getLogger(__name__)

DTYPES = ("fp32", "fp16", "bf16")  # names of emo_core.pipeline.runtime.DTYPES; torch loads lazily


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "init-checkpoint", help="SD1.5 + AnimateDiff -> untrained EMO checkpoint",
        description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--sd15", type=Path, default=None,
                        help="SD1.5 single file (.safetensors/.ckpt) or diffusers folder")
    parser.add_argument("--motion-module", type=Path, default=None,
                        help="AnimateDiff SD1.5 motion module, e.g. mm_sd_v15_v2.ckpt")
    parser.add_argument("--from-hallo", type=Path, default=None, metavar="FILE",
                        help="converted Hallo checkpoint (convert-hallo output): keep it all and "
                             "add zero-initialised speed layers (instead of --sd15/--motion-module)")
    parser.add_argument("--out", type=Path, required=True, help="output .safetensors file")
    parser.add_argument("--vae", type=Path, default=None,
                        help="VAE file or folder (default: the VAE inside --sd15, if any)")
    parser.add_argument("--no-vae", action="store_true", help="store no VAE in the checkpoint")
    parser.add_argument("--preset", choices=("sd15", "tiny"), default="sd15",
                        help="architecture preset (tiny: test-sized models)")
    parser.add_argument("--dtype", choices=DTYPES, default="fp32",
                        help="tensor type stored in the file (fp16 halves its size)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the new branches' non-zero parameters")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser


def _check_args(args) -> None:
    from ..errors import EMOInputError

    if args.out.suffix.lower() != ".safetensors":
        raise EMOInputError(f"--out {str(args.out)!r} must end in .safetensors")
    if args.out.exists() and not args.overwrite:
        raise EMOInputError(
            f"--out {str(args.out)!r} already exists; choose another name or pass --overwrite"
        )
    if args.vae is not None and args.no_vae:
        raise EMOInputError("--vae and --no-vae contradict each other; pass only one")
    if args.from_hallo is not None:
        if args.sd15 is not None or args.motion_module is not None or args.vae is not None:
            raise EMOInputError("--from-hallo takes everything from the Hallo checkpoint; do not "
                                "also pass --sd15, --motion-module or --vae")
        if not args.from_hallo.is_file():
            raise EMOInputError(f"--from-hallo {str(args.from_hallo)!r} is not a file; pass the "
                                "EMO checkpoint written by `python -m emo_core convert-hallo`")
    elif args.sd15 is None or args.motion_module is None:
        raise EMOInputError("pass --sd15 and --motion-module (or --from-hallo FILE)")


def _load_sources(args, unet_config, vae_config):
    """(UNet2DConditionModel, AutoencoderKL | None, AnimateDiff state dict), all checked."""
    from ..io.animatediff import load_motion_module
    from ..io.conversion import has_vae_weights
    from ..io.safe_load import load_state_dict
    from ..io.sd15 import component_file, load_sd15_vae, unet_from_state_dict, vae_from_state_dict

    motion = load_motion_module(args.motion_module)  # small: fail fast before the big reads
    unet_file = component_file(args.sd15, "unet")
    source = load_state_dict(unet_file)
    unet = unet_from_state_dict(source, unet_config, what=f"UNet in {unet_file}")
    vae = None
    if args.vae is not None:
        vae = load_sd15_vae(args.vae, vae_config)
    elif not args.no_vae and args.sd15.is_file() and has_vae_weights(source):
        vae = vae_from_state_dict(source, vae_config, what=f"VAE in {unet_file}")
    elif not args.no_vae and (args.sd15 / "vae").is_dir():
        vae = load_sd15_vae(args.sd15, vae_config)
    if vae is None and not args.no_vae:
        logger.warning("no VAE found in %s and no --vae given: the checkpoint has no VAE "
                       "(connect one in ComfyUI, or pass --vae)", args.sd15)
    return unet, vae, motion


def build_initial_models(unet, vae, motion, preset: str, seed: int):
    """EMOModels: ReferenceNet/Backbone copied from ``unet``, AnimateDiff loaded, rest zero."""
    import torch

    from ..io.animatediff import apply_motion_module
    from ..models.emo_models import EMOModels
    from ..models.presets import emo_component_configs

    configs = emo_component_configs(preset)
    with torch.random.fork_rng(devices=[]):  # the new branches' random parts, reproducibly
        torch.manual_seed(seed)
        models = EMOModels.from_unet2d(unet, configs, vae=vae)
    apply_motion_module(models.backbone, motion)
    return models


def _run_from_hallo(args) -> int:
    from ..errors import EMOInputError
    from ..families import family_of
    from ..families.hallo import HalloFamily
    from ..io.emo_checkpoint import load_emo_checkpoint, save_emo_checkpoint
    from ..models.speed_layers import is_speed_parameter, with_speed_layers
    from ..pipeline.runtime import DTYPES as TORCH_DTYPES

    source = load_emo_checkpoint(args.from_hallo)
    family = family_of(source)
    if not isinstance(family, HalloFamily):
        raise EMOInputError(f"--from-hallo {str(args.from_hallo)!r} is an EMO checkpoint of "
                            f"variant {family.name!r}, not a converted Hallo "
                            "one; convert Hallo's net.pth with `python -m emo_core convert-hallo`")
    if source.speed_encoder is not None:
        raise EMOInputError(f"--from-hallo {str(args.from_hallo)!r} already has speed layers")
    if args.no_vae:
        source.vae = None
    models = with_speed_layers(source.float(), seed=args.seed)
    out = save_emo_checkpoint(models.to(TORCH_DTYPES[args.dtype]), args.out)
    added = sum(p.numel() for n, p in models.named_parameters() if is_speed_parameter(n))
    print(f"EMO checkpoint written to {out.resolve()} (Hallo weights + {added / 1e6:.2f} M new "
          f"speed-layer parameters, {args.dtype})")
    print("note: the speed layers start at zero (output identical to Hallo); train them with "
          "`python -m emo_core train --stage 3` (docs/TRAINING.md).")
    return 0


def run(args) -> int:
    from ..errors import CheckpointError
    from ..io.emo_checkpoint import save_emo_checkpoint
    from ..models.presets import unet_config, vae_config
    from ..pipeline.runtime import DTYPES as TORCH_DTYPES

    _check_args(args)
    if args.from_hallo is not None:
        return _run_from_hallo(args)
    unet, vae, motion = _load_sources(args, unet_config(args.preset), vae_config(args.preset))
    try:
        models = build_initial_models(unet, vae, motion, args.preset, args.seed)
    except CheckpointError as error:  # only the motion module is checked there: name it
        raise CheckpointError(f"motion module {str(args.motion_module)!r}: {error}") from None
    del unet
    out = save_emo_checkpoint(models.to(TORCH_DTYPES[args.dtype]), args.out)
    parameters = sum(p.numel() for p in models.parameters())
    print(f"EMO checkpoint written to {out.resolve()} ({parameters / 1e6:.1f} M parameters, "
          f"{args.dtype}, VAE {'included' if vae is not None else 'not included'})")
    print("note: the audio, speed and face-locator branches are untrained (zero): this "
          "checkpoint is a starting point for training, it does not animate portraits yet.")
    return 0
