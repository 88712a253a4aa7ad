"""``python -m emo_core demo``: one command from a fresh clone to a video.

Builds the tiny random demo weights into a cache folder when they are missing, then generates a
video from the bundled sample portrait and speech clip. Demo weights are random: the video is
noise-like by design; it proves the whole machinery runs, not that a face talks.

``--talking-cartoon`` uses the tiny weights that ``prove-learning`` trained (committed under
benchmarks/results/prove_learning/tiny_emo) instead: a 64x64 cartoon face that speaks the clip.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .progress import TqdmProgress

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
TRAINED_TINY = (Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "prove_learning"
                / "tiny_emo")
CARTOON_SIZE = 64  # what the tiny trained weights were trained at
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
    parser.add_argument("--talking-cartoon", action="store_true",
                        help="use the tiny weights trained by prove-learning: a cartoon face "
                             "(64x64) that speaks the audio, instead of random demo weights")
    parser.add_argument("--weights", type=Path, default=None,
                        help="weights folder (emo.safetensors + wav2vec2/); default: the demo "
                             f"weights cache {default_cache() / 'demo-weights'} (created when "
                             f"missing), or {TRAINED_TINY} with --talking-cartoon")
    parser.add_argument("--audio", type=Path, default=SAMPLES / "speech_arctic_a0007.wav",
                        help="speech or song to speak")
    parser.add_argument("--fps", type=float, default=25.0, help="video frame rate")
    parser.add_argument("--steps", type=int, default=None,
                        help="denoising steps per clip (default 4; 20 with --talking-cartoon)")
    parser.add_argument("--size", type=int, default=None,
                        help="generation size in pixels (default 128; --talking-cartoon: 64 only)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed (with --talking-cartoon it also picks the face)")
    return parser


def ensure_demo_weights(folder: Path) -> Path:
    from ..io.demo_weights import write_demo_weights

    if not (folder / "emo.safetensors").is_file() or not (folder / "wav2vec2" / "config.json").is_file():
        print(f"building demo weights in {folder} ...")
        write_demo_weights(folder)
    return folder


def run(args) -> int:
    from ..paths import check_output_path

    check_output_path(args.out, ".mp4", what="--out")  # before any weights are built or loaded
    if args.talking_cartoon:
        return run_talking_cartoon(args)
    from ..pipeline.run import GenerateRequest, generate_video
    from ..pipeline.settings import GenerationSettings

    weights = ensure_demo_weights(args.weights or default_cache() / "demo-weights")
    request = GenerateRequest(
        checkpoint=weights / "emo.safetensors", wav2vec=weights / "wav2vec2",
        mediapipe=SAMPLES / "mediapipe", image=SAMPLES / "portrait_astronaut.png",
        audio=args.audio, out=args.out,
        settings=GenerationSettings(fps=args.fps, steps=args.steps or 4, size=args.size or 128,
                                    seed=args.seed),
    )
    print(NOISE_WARNING)
    with TqdmProgress() as progress:
        out = generate_video(request, progress=progress)
    print(f"demo video written to {out.resolve()}")
    print(NOISE_WARNING)
    return 0


def run_talking_cartoon(args) -> int:
    """The tiny trained EMO on a held-out cartoon face; prints how well the mouth follows the
    loudness of the audio (measured in the generated frames)."""
    import numpy as np

    from ..audio.waveform import load_audio_file
    from ..errors import EMOInputError
    from ..io.emo_checkpoint import load_emo_checkpoint
    from ..io.wav2vec import load_wav2vec
    from ..pipeline.pipeline import EMOPipeline
    from ..pipeline.settings import GenerationSettings
    from ..pipeline.video import Mp4Writer
    from ..training.procedural.evaluate import correlation
    from ..training.procedural.faces import measure_mouth, random_identity
    from ..training.procedural.talking_cartoon import generate_talking_cartoon, loudness_per_frame
    from ..training.prove_learning import HELD_OUT_IDENTITY, ProofPlan

    weights = args.weights or TRAINED_TINY
    if not (weights / "emo.safetensors").is_file() or not (weights / "wav2vec2").is_dir():
        raise EMOInputError(
            f"--talking-cartoon needs the tiny trained weights (emo.safetensors + wav2vec2/) in "
            f"{weights}; they come with a clone of the repository, or run `python -m emo_core "
            f"prove-learning` (~35 min on CPU) to train them")
    if args.size not in (None, CARTOON_SIZE):
        raise EMOInputError(f"--size {args.size}: the tiny trained weights work at "
                            f"{CARTOON_SIZE} px only; leave --size out")
    plan = ProofPlan()
    settings = GenerationSettings(fps=args.fps, steps=args.steps or plan.eval_steps,
                                  seed=args.seed, frames_per_clip=plan.frames,
                                  motion_frames=plan.motion_frames, size=CARTOON_SIZE).validate()
    waveform, rate = load_audio_file(args.audio)
    # Held-out faces: training used identity seeds 0..191; 1000 above the proof's own held-out
    # seeds, so the demo face is not one the figures were measured on either.
    identity = random_identity(np.random.default_rng(HELD_OUT_IDENTITY + 1000 + args.seed))
    pipeline = EMOPipeline(load_emo_checkpoint(weights / "emo.safetensors"))
    print(f"talking cartoon from {weights} (tiny weights trained by prove-learning; cartoon faces "
          f"at {CARTOON_SIZE} px only) ...")
    frames = generate_talking_cartoon(pipeline, load_wav2vec(weights / "wav2vec2"), identity,
                                      waveform, rate, 1.0, settings, CARTOON_SIZE)
    with Mp4Writer(args.out, args.fps, CARTOON_SIZE, CARTOON_SIZE,
                   audio=(waveform, rate)) as writer:
        writer.write(frames)
    r = correlation(measure_mouth(frames), loudness_per_frame(waveform, rate, args.fps,
                                                              len(frames)))
    print(f"talking cartoon written to {Path(args.out).resolve()}: {len(frames)} frames; mouth "
          f"opening measured in the frames vs audio loudness: r = {r:.2f}")
    return 0
