"""``python -m emo_core demo-weights``: write a tiny random weight bundle (no downloads).

The bundle (DIR/emo.safetensors + DIR/wav2vec2/) runs every code path of the package, fast, on a
CPU. Its weights are random: videos made with it are noise, not talking heads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NOISE_NOTE = ("note: demo weights are RANDOM; they test the software, and the videos they make "
              "are noise. Use real weights (see README) for talking heads.")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo-weights", help="write tiny random weights for testing (videos are noise)",
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, required=True,
                        help="folder to write emo.safetensors and wav2vec2/ into")
    parser.add_argument("--seed", type=int, default=0, help="seed; same seed, same files")
    return parser


def run(args) -> int:
    from ..errors import EMOInputError
    from ..io.demo_weights import WAV2VEC_FOLDER, write_demo_weights
    from ..io.emo_checkpoint import FOLDER_FILE

    if args.seed < 0:
        raise EMOInputError(f"--seed must be >= 0, got {args.seed}")
    out = write_demo_weights(args.out, seed=args.seed).resolve()
    print(f"EMO checkpoint: {out / FOLDER_FILE}")
    print(f"wav2vec2 folder: {out / WAV2VEC_FOLDER}")
    print(NOISE_NOTE)
    return 0
