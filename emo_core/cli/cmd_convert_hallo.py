"""``python -m emo_core convert-hallo``: Hallo's ``pretrained_models/`` -> one EMO checkpoint.

Reads ``hallo/net.pth`` (or ``hallo2/net.pth``; ``torch.load(weights_only=True)``), the base
``stable-diffusion-v1-5/unet/config.json``, ``wav2vec/wav2vec2-base-960h/config.json`` and, when
present, the ``sd-vae-ft-mse/`` VAE, and writes an EMO checkpoint of the Hallo variant (Hallo's
sampling defaults travel in its config). Every net.pth tensor is used exactly once. Hallo2's
weights (``hallo2/net.pth``, or ``--hallo2``) have Hallo's layout; the checkpoint then records
Hallo2's inference (masked motion frames, 60 s audio segments; ``io/hallo2.py``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .help_format import HelpFormatter

NET_FILES = ("hallo/net.pth", "hallo2/net.pth")
HALLO2_NET = "hallo2/net.pth"
UNET_CONFIG = "stable-diffusion-v1-5/unet/config.json"
WAV2VEC_CONFIG = "wav2vec/wav2vec2-base-960h/config.json"
VAE_FOLDER = "sd-vae-ft-mse"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert-hallo", help="convert Hallo weights (pretrained_models/) to an EMO checkpoint",
        description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--pretrained-models", type=Path, required=True, metavar="DIR",
                        help="Hallo's pretrained_models/ folder")
    parser.add_argument("--unet-kwargs", type=Path, metavar="FILE.json",
                        help="Hallo unet_additional_kwargs as JSON (omitted: the values of "
                             "Hallo's configs/inference/default.yaml, its released settings)")
    parser.add_argument("--hallo2", action="store_true",
                        help="the weights are Hallo2's: record Hallo2's inference (motion frames "
                             "masked at rate 0.25, audio cut into 60 s pieces); reads "
                             "hallo2/net.pth, or hallo/net.pth when that is where they are. "
                             "Implied when the folder has hallo2/net.pth and no hallo/net.pth")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.safetensors",
                        help="the EMO checkpoint to write (put it in ComfyUI/models/emo/ to use "
                             "it from Load EMO Models)")
    return parser


def run(args) -> int:
    from ..errors import EMOInputError

    kwargs = None
    if args.unet_kwargs is not None:
        try:
            kwargs = json.loads(Path(args.unet_kwargs).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise EMOInputError(f"--unet-kwargs {str(args.unet_kwargs)!r} is not a readable JSON "
                                f"file ({error}); pass Hallo's unet_additional_kwargs as JSON") from error
    hallo2 = True if args.hallo2 else None
    out = convert_hallo(args.pretrained_models, args.out, unet_kwargs=kwargs, hallo2=hallo2)
    from ..io.emo_checkpoint import read_emo_configs
    from ..io.hallo2 import is_hallo2

    recorded = is_hallo2(read_emo_configs(out).get("sampling"))
    print(f"EMO checkpoint ({'Hallo2' if recorded else 'Hallo'} variant): {out}")
    if not recorded and (Path(args.pretrained_models) / HALLO2_NET).is_file():
        print(f"note: converted hallo/net.pth; pass --hallo2 to convert {HALLO2_NET} instead")
    return 0


def _find(root: Path, options: tuple[str, ...], what: str) -> Path:
    from ..errors import EMOInputError

    for option in options:
        if (root / option).is_file():
            return root / option
    raise EMOInputError(
        f"{what} not found in {str(root)!r} (looked for {', '.join(options)}); pass Hallo's "
        "pretrained_models/ folder (Hugging Face fudan-generative-ai/hallo)")


def convert_hallo(pretrained: Path, out: Path, unet_kwargs: dict | None = None,
                  hallo2: bool | None = None) -> Path:
    """Convert and write atomically; returns the written path. ``hallo2``: True = Hallo2's
    weights (``hallo2/net.pth`` preferred), False = Hallo's, None = what the file's folder says."""
    import torch

    from ..errors import CheckpointError, EMOInputError
    from ..io.conversion import split_emo_components
    from ..io.emo_checkpoint import EMO_FORMAT
    from ..io.hallo import check_against_model, hallo_configs, hallo_to_emo
    from ..io.safe_load import load_state_dict, metadata_json, save_safetensors_atomic
    from ..models.emo_models import EMOModels

    pretrained, out = Path(pretrained), Path(out)
    if out.suffix.lower() != ".safetensors":
        raise EMOInputError(f"--out {str(out)!r} must be a .safetensors file")
    net_path = _find(pretrained, NET_FILES[::-1] if hallo2 else NET_FILES, "Hallo net.pth")
    if hallo2 is None:
        hallo2 = net_path == pretrained / HALLO2_NET
    unet_config = json.loads(_find(pretrained, (UNET_CONFIG,), "SD1.5 unet/config.json").read_text())
    wav2vec_path = pretrained / WAV2VEC_CONFIG
    wav2vec_config = json.loads(wav2vec_path.read_text()) if wav2vec_path.is_file() else None
    net = load_state_dict(net_path)
    converted = hallo_to_emo(net)
    vae_config = None
    if (pretrained / VAE_FOLDER / "config.json").is_file():
        vae_config = json.loads((pretrained / VAE_FOLDER / "config.json").read_text())
        vae_weights = _find(pretrained / VAE_FOLDER, ("diffusion_pytorch_model.safetensors",
                                                      "diffusion_pytorch_model.bin"), "VAE weights")
        converted.update({f"vae.{k}": v for k, v in load_state_dict(vae_weights).items()})
    configs = hallo_configs(net, unet_config, unet_kwargs, wav2vec_config, vae_config)
    if hallo2:  # same networks; Hallo2's inference settings (io/hallo2.py)
        from ..io.hallo2 import hallo2_sampling

        configs["sampling"] = hallo2_sampling()
    try:
        with torch.device("meta"):
            model = EMOModels.from_configs(configs)
    except ValueError as error:
        raise CheckpointError(
            f"Hallo checkpoint {str(net_path)!r} does not fit the settings given: {error}. Pass "
            "the matching --unet-kwargs (Hallo's unet_additional_kwargs) and the base "
            f"{UNET_CONFIG}") from error
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    context = configs["context"]
    converted["context"] = torch.zeros(1, context["tokens"], context["dim"])
    check_against_model(shapes, converted, str(net_path))
    split_emo_components(converted)
    metadata = {"emo_format": EMO_FORMAT, "emo_config": metadata_json(configs)}
    return save_safetensors_atomic(converted, out, metadata)
