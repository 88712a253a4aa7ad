"""``python -m emo_core demo``: one command from a fresh clone to a video.

Builds the tiny random demo weights into a cache folder when they are missing, then generates a
video from the bundled sample portrait and speech clip. Demo weights are random: the video is
noise-like by design; it proves the whole machinery runs, not that a face talks. It runs at 64 px
with 4 denoising steps so that it finishes in about 15-20 s of CPU time, first run included.

``--talking-cartoon`` uses the tiny weights that ``prove-learning`` trained (committed under
benchmarks/results/prove_learning/tiny_emo) instead: a 64x64 cartoon face that speaks the clip.

Videos go to ./emo-output/ under a new name each run (demo-001.mp4, demo-002.mp4, ...).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from . import stop_signals
from .demo_progress import DemoProgress
from .help_format import HelpFormatter
from .settings_args import add_setting_argument, setting_help

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
TRAINED_TINY = (Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "prove_learning"
                / "tiny_emo")
OUTPUT_FOLDER = Path("emo-output")
# Noise demo: 64 px and 4 steps keep it at ~15 s of CPU (128 px: ~4x the denoising time).
DEMO_SIZE = 64
DEMO_STEPS = 4
CARTOON_SIZE = 64  # what the tiny trained weights were trained at
# The proof measured its figures at 20 steps; 10 give the same mouth/loudness r (0.74) here in
# half the time (measured: 20 steps 48 s, 10 steps 27 s, 6 steps 18 s of CPU).
CARTOON_STEPS = 10
# The tiny models run fastest on one thread; more threads on a busy 2-core machine cost up to 10x
# the CPU time in OpenMP spin-waits (measured: 14 s with 1 thread, 139 s with 2).
DEMO_THREADS = 1
NOISE_NOTE = ("random demo weights: the video shows noise, not a talking face (this checks that "
              "the whole pipeline runs; real results need trained EMO weights, see README)")


def default_cache() -> Path:
    base = os.environ.get("EMO_PORTRAIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "emo-portrait")
    return Path(base)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo", help="build demo weights if needed and generate a video from the bundled samples",
        description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output .mp4 path (default: a new {OUTPUT_FOLDER}/demo-NNN.mp4, or "
                             f"{OUTPUT_FOLDER}/talking-cartoon-NNN.mp4, in the current folder)")
    parser.add_argument("--talking-cartoon", action="store_true",
                        help="use the tiny weights trained by prove-learning: a cartoon face "
                             "(64x64) that speaks the audio, instead of random demo weights")
    parser.add_argument("--weights", type=Path, default=None,
                        help="weights folder (emo.safetensors + wav2vec2/) (default: the demo "
                             "weights cache $EMO_PORTRAIT_CACHE/demo-weights, "
                             "~/.cache/emo-portrait/demo-weights when unset, created when "
                             "missing; with --talking-cartoon the committed tiny_emo folder)")
    parser.add_argument("--audio", type=Path, default=SAMPLES / "speech_arctic_a0007.wav",
                        help="speech or song to speak (default: the bundled 4 s speech clip)")
    add_setting_argument(parser, "fps")
    add_setting_argument(parser, "steps", default=None,
                         help=f"{setting_help('steps')} (default {DEMO_STEPS}; "
                              f"{CARTOON_STEPS} with --talking-cartoon)")
    add_setting_argument(parser, "size", default=None,
                         help=f"{setting_help('size')} (default {DEMO_SIZE}; "
                              f"--talking-cartoon: {CARTOON_SIZE} only)")
    add_setting_argument(parser, "seed",
                         help=f"{setting_help('seed')} (with --talking-cartoon it also picks "
                              "the face)")
    parser.add_argument("--threads", type=int, default=DEMO_THREADS,
                        help="torch CPU threads (1 is fastest for these tiny models)")
    return parser


def next_free_output(stem: str, folder: Path = OUTPUT_FOLDER) -> Path:
    """``folder/stem-NNN.mp4`` with the first unused NNN; the name is reserved at once (an empty
    file, replaced by the finished video) so two runs never write the same file."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(1, 100_000):
        path = folder / f"{stem}-{number:03d}.mp4"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return path
    raise OSError(f"{folder} holds 100000 {stem} videos; clean it up")


def ensure_demo_weights(folder: Path) -> Path:
    from ..io.demo_weights import write_demo_weights

    if not (folder / "emo.safetensors").is_file() or not (folder / "wav2vec2" / "config.json").is_file():
        print(f"building demo weights in {folder} (first run only) ...", flush=True)
        write_demo_weights(folder)
    return folder


def _preflight(args) -> None:
    """Every demo option and input checked before anything heavy is imported or built."""
    from ..errors import EMOInputError
    from ..pipeline.preflight import check_media_file, check_output_file
    from ..pipeline.settings import GenerationSettings

    size = args.size or (CARTOON_SIZE if args.talking_cartoon else DEMO_SIZE)
    steps = args.steps or (CARTOON_STEPS if args.talking_cartoon else DEMO_STEPS)
    GenerationSettings(fps=args.fps, steps=steps, size=size, seed=args.seed).validate()
    if args.threads < 1:
        raise EMOInputError(f"--threads must be >= 1, got {args.threads}")
    check_media_file(args.audio, "--audio", "audio")
    if args.out is not None:
        check_output_file(args.out)
    else:
        check_output_file(OUTPUT_FOLDER / "demo-001.mp4", f"output folder {OUTPUT_FOLDER}/")
    if args.weights is not None and args.weights.exists() and not args.weights.is_dir():
        raise EMOInputError(f"--weights {str(args.weights)!r} is a file; give the folder holding "
                            "emo.safetensors and wav2vec2/")


def _check_existing_weights(folder: Path) -> None:
    from ..pipeline.preflight import check_checkpoint_header, check_wav2vec_header

    if (folder / "emo.safetensors").exists():
        check_checkpoint_header(folder / "emo.safetensors")
        check_wav2vec_header(folder / "wav2vec2")


def run(args) -> int:
    package_logger = logging.getLogger("emo_core")
    level = package_logger.level
    with DemoProgress() as progress:
        progress.stage("checking inputs")
        _preflight(args)
        if not getattr(args, "verbose", False):
            package_logger.setLevel(logging.WARNING)  # the bar and the result, no info lines
            # No MediaPipe/LiteRT info lines, no transformers weight-loading bars either.
            for name, value in (("GLOG_minloglevel", "2"), ("TF_CPP_MIN_LOG_LEVEL", "2"),
                                ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
                os.environ.setdefault(name, value)
        try:
            if args.talking_cartoon:
                return run_talking_cartoon(args, progress)
            return run_noise_demo(args, progress)
        finally:
            package_logger.setLevel(level)


def run_noise_demo(args, progress: DemoProgress) -> int:
    progress.stage("importing torch and diffusers")
    import torch

    from ..pipeline.run import GenerateRequest, generate_video
    from ..pipeline.settings import GenerationSettings

    torch.set_num_threads(args.threads)
    folder = args.weights or default_cache() / "demo-weights"
    _check_existing_weights(folder)
    progress.stage("demo weights")
    weights = ensure_demo_weights(folder)
    out = args.out or next_free_output("demo")
    settings = GenerationSettings(fps=args.fps, steps=args.steps or DEMO_STEPS,
                                  size=args.size or DEMO_SIZE, seed=args.seed)
    request = GenerateRequest(
        checkpoint=weights / "emo.safetensors", wav2vec=weights / "wav2vec2",
        mediapipe=SAMPLES / "mediapipe", image=SAMPLES / "portrait_astronaut.png",
        audio=args.audio, out=out, settings=settings)
    progress.stage("face, audio features, models")
    try:
        generate_video(request, progress=progress.denoising,
                       cancel=stop_signals.raise_if_stopped)
    except BaseException:
        _drop_placeholder(out, args.out)
        raise
    progress.finish()
    print(f"demo video: {out.resolve()}\n  shows the bundled portrait speaking "
          f"{args.audio.name} at {settings.size} px, {settings.steps} steps; {NOISE_NOTE}")
    return 0


def _drop_placeholder(out: Path, chosen: Path | None) -> None:
    """Remove the reserved empty output name after a failed run (never a file the user named)."""
    if chosen is None and out.exists() and out.stat().st_size == 0:
        out.unlink()


def run_talking_cartoon(args, progress: DemoProgress) -> int:
    """The tiny trained EMO on a held-out cartoon face; prints how well the mouth follows the
    loudness of the audio (measured in the generated frames)."""
    from ..errors import EMOInputError

    weights = args.weights or TRAINED_TINY
    if not (weights / "emo.safetensors").is_file() or not (weights / "wav2vec2").is_dir():
        raise EMOInputError(
            f"--talking-cartoon needs the tiny trained weights (emo.safetensors + wav2vec2/) in "
            f"{weights}; they come with a clone of the repository, or run `python -m emo_core "
            f"prove-learning` (~35 min on CPU) to train them")
    if args.size not in (None, CARTOON_SIZE):
        raise EMOInputError(f"--size {args.size}: the tiny trained weights work at "
                            f"{CARTOON_SIZE} px only; leave --size out")
    progress.stage("importing torch and diffusers")
    from .demo_cartoon import talking_cartoon

    _check_existing_weights(weights)
    out = args.out or next_free_output("talking-cartoon")
    try:
        frames, r = talking_cartoon(weights, args, out, progress)
    except BaseException:
        _drop_placeholder(out, args.out)
        raise
    progress.finish()
    print(f"talking cartoon: {out.resolve()}\n  shows a cartoon face never seen in training "
          f"speaking {args.audio.name}: {frames} frames at {CARTOON_SIZE} px, "
          f"{args.steps or CARTOON_STEPS} steps (tiny weights trained by prove-learning); mouth "
          f"opening measured in the frames vs audio loudness: r = {r:.2f}")
    return 0
