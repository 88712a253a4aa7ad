"""``python -m emo_core demo``: one command from a fresh clone to a video.

Builds the tiny random demo weights into a cache folder when they are missing, then generates a
video from the bundled sample portrait and speech clip. Demo weights are random: the video is
noise-like by design; it proves the whole machinery runs, not that a face talks.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .progress import TqdmProgress

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
NOISE_WARNING = ("NOTE: demo weights are randomly initialised, so the video shows noise, not a "
                 "talking face. Real results need trained EMO weights (see README).")


def default_cache() -> Path:
    base = os.environ.get("EMO_PORTRAIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "emo-portrait")
    return Path(base)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo", help="build demo weights if needed and generate a video from the bundled samples",
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo.mp4"), help="output .mp4 path")
    parser.add_argument("--weights", type=Path, default=default_cache() / "demo-weights",
                        help="folder for the demo weights (created when missing)")
    parser.add_argument("--fps", type=float, default=25.0, help="video frame rate")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per clip")
    parser.add_argument("--size", type=int, default=128, help="generation size in pixels")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    return parser


def ensure_demo_weights(folder: Path) -> Path:
    from ..io.demo_weights import write_demo_weights

    if not (folder / "emo.safetensors").is_file() or not (folder / "wav2vec2" / "config.json").is_file():
        print(f"building demo weights in {folder} ...")
        write_demo_weights(folder)
    return folder


def run(args) -> int:
    from ..pipeline.run import GenerateRequest, generate_video
    from ..pipeline.settings import GenerationSettings

    weights = ensure_demo_weights(args.weights)
    request = GenerateRequest(
        checkpoint=weights / "emo.safetensors", wav2vec=weights / "wav2vec2",
        mediapipe=SAMPLES / "mediapipe", image=SAMPLES / "portrait_astronaut.png",
        audio=SAMPLES / "speech_arctic_a0007.wav", out=args.out,
        settings=GenerationSettings(fps=args.fps, steps=args.steps, size=args.size, seed=args.seed),
    )
    print(NOISE_WARNING)
    with TqdmProgress() as progress:
        out = generate_video(request, progress=progress)
    print(f"demo video written to {out.resolve()}")
    print(NOISE_WARNING)
    return 0
