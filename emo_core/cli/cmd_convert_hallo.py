"""``python -m emo_core convert-hallo``: Hallo's ``pretrained_models/`` -> one EMO checkpoint.

Reads ``hallo/net.pth`` (or ``hallo2/net.pth``; ``torch.load(weights_only=True)``), the base
``stable-diffusion-v1-5/unet/config.json``, ``wav2vec/wav2vec2-base-960h/config.json`` and, when
present, the ``sd-vae-ft-mse/`` VAE (stabilityai's legacy attention names are renamed), and
writes an EMO checkpoint of the Hallo variant (Hallo's sampling defaults travel in its config).
Every net.pth tensor is used exactly once. Memory: about the size of net.pth (it is read
through a memory map and written out tensor by tensor). Hallo2's weights (``hallo2/net.pth``, or
``--hallo2``) have Hallo's layout; the checkpoint then records Hallo2's inference (masked motion
frames, 60 s audio segments; ``io/hallo2.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .help_format import HelpFormatter


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
    from .output_guard import refuse_output_over_inputs

    refuse_output_over_inputs([("--out", args.out)], [("--pretrained-models", args.pretrained_models),
                                                      ("--unet-kwargs", args.unet_kwargs)])

    from ..io.emo_checkpoint import read_emo_configs
    from ..io.hallo2 import is_hallo2
    from ..io.hallo_convert import convert_pretrained
    from ..io.hallo_sources import HALLO2_NET, VAE_FOLDER

    out = convert_pretrained(args.pretrained_models, args.out, unet_kwargs_file=args.unet_kwargs,
                             hallo2=True if args.hallo2 else None)
    recorded = is_hallo2(read_emo_configs(out).get("sampling"))
    print(f"EMO checkpoint ({'Hallo2' if recorded else 'Hallo'} variant): {out}")
    if not recorded and (args.pretrained_models / HALLO2_NET).is_file():
        print(f"note: converted hallo/net.pth; pass --hallo2 to convert {HALLO2_NET} instead")
    if not (args.pretrained_models / VAE_FOLDER).exists():
        print(f"note: {VAE_FOLDER}/ not found, so the checkpoint has no VAE: generate needs one "
              "(put stabilityai's sd-vae-ft-mse in pretrained_models/ and convert again); in "
              "ComfyUI connect an SD1.5 VAE to Load EMO Models")
    return 0


def convert_hallo(pretrained: Path, out: Path, unet_kwargs: dict | None = None,
                  hallo2: bool | None = None) -> Path:
    """Convert and write atomically; returns the written path (``unet_kwargs``: a dict, or
    ``None`` for Hallo's released values; ``hallo2``: True = Hallo2's weights, ``hallo2/net.pth``
    preferred, False = Hallo's, None = what the file's folder says)."""
    from ..io.hallo_convert import convert_pretrained

    return convert_pretrained(pretrained, out, unet_kwargs=unet_kwargs, hallo2=hallo2)
