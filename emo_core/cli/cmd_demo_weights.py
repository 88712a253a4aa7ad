"""``python -m emo_core demo-weights``: write a tiny random weight bundle (no downloads).

The bundle (DIR/emo.safetensors + DIR/wav2vec2/) runs every code path of the package, fast, on a
CPU. Its weights are random: videos made with it are noise, not talking heads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .help_format import HelpFormatter

NOISE_NOTE = ("note: demo weights are RANDOM; they test the software, and the videos they make "
              "are noise. Use real weights (see README) for talking heads.")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo-weights", help="write tiny random weights for testing (videos are noise)",
        description=__doc__, formatter_class=HelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path,
                        help="folder to write emo.safetensors and wav2vec2/ into")
    target.add_argument("--comfyui-models", type=Path, metavar="MODELS_DIR",
                        help="a ComfyUI models folder: writes emo/emo.safetensors and "
                             "wav2vec2/wav2vec2/ where Load EMO Models looks for them")
    parser.add_argument("--seed", type=int, default=0, help="seed; same seed, same files")
    return parser


def run(args) -> int:
    from ..errors import EMOInputError

    if args.seed < 0:
        raise EMOInputError(f"--seed must be >= 0, got {args.seed}")
    _check_targets(args)  # before torch is imported: a refusal costs well under a second
    from ..io.demo_weights import WAV2VEC_FOLDER, write_demo_weights
    from ..io.emo_checkpoint import FOLDER_FILE
    if args.comfyui_models is not None:
        checkpoint, wav2vec = _write_into_comfyui(args.comfyui_models, args.seed)
    else:
        out = write_demo_weights(args.out, seed=args.seed).resolve()
        checkpoint, wav2vec = out / FOLDER_FILE, out / WAV2VEC_FOLDER
    print(f"EMO checkpoint: {checkpoint}")
    print(f"wav2vec2 folder: {wav2vec}")
    print(NOISE_NOTE)
    return 0


def _check_targets(args) -> None:
    """Every folder written to can take new files, checked before the weights are built."""
    from ..paths import check_output_folder

    if args.comfyui_models is None:
        check_output_folder(args.out, "--out")
        return
    check_output_folder(args.comfyui_models, "--comfyui-models")
    for sub in ("emo", "wav2vec2"):
        check_output_folder(args.comfyui_models / sub, f"--comfyui-models folder {sub}/")


def _write_into_comfyui(models_dir: Path, seed: int) -> tuple[Path, Path]:
    """Build the bundle beside ``models_dir/emo`` and move its parts into ComfyUI's layout."""
    import shutil
    import tempfile

    from ..io.demo_weights import WAV2VEC_FOLDER, write_demo_weights
    from ..io.emo_checkpoint import FOLDER_FILE

    models_dir = models_dir.resolve()
    checkpoint = models_dir / "emo" / FOLDER_FILE
    wav2vec = models_dir / "wav2vec2" / WAV2VEC_FOLDER
    for folder in (checkpoint.parent, wav2vec.parent):
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".emo-demo.", dir=models_dir) as staging:
        bundle = write_demo_weights(Path(staging) / "bundle", seed=seed)
        if wav2vec.exists():
            shutil.rmtree(wav2vec)
        (bundle / WAV2VEC_FOLDER).replace(wav2vec)
        (bundle / FOLDER_FILE).replace(checkpoint)
    return checkpoint, wav2vec
