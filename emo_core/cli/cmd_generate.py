"""``python -m emo_core generate``: portrait + audio -> talking-head mp4."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..face.mask_expand import DEFAULT_MASK_EXPAND, MASK_EXPAND_HELP
from ..pipeline.settings import FPS_RANGE, SCHEDULERS, GenerationSettings
from . import stop_signals
from .help_format import HelpFormatter
from .progress import TqdmProgress
from .style_args import add_style_arguments, apply_style_from_args, style_requested


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "generate",
        help="generate a talking/singing video from one portrait and one audio file",
        description="Generate a talking/singing video: the face in IMAGE speaks AUDIO. Output is an "
        "H.264 + AAC mp4 with exactly round(audio seconds x fps) frames, written atomically.",
        formatter_class=HelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument("--image", type=Path, required=True,
                        help="portrait photo (png/jpg/webp, any size; RGBA and grey accepted)")
    parser.add_argument("--audio", type=Path, required=True,
                        help="voice or song (wav, mp3, m4a/aac, flac, ogg; any rate/channels)")
    parser.add_argument("--out", type=Path, required=True, help="output .mp4 path")
    add_generation_arguments(parser)
    add_style_arguments(parser)
    return parser


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="EMO checkpoint (.safetensors file or folder with emo.safetensors)")
    parser.add_argument("--wav2vec", type=Path, required=True,
                        help="Hugging Face wav2vec2 folder (e.g. facebook/wav2vec2-base-960h)")
    parser.add_argument("--mediapipe", type=Path, required=True,
                        help="folder with blaze_face_short_range.tflite and face_landmarker.task")
    parser.add_argument("--face-analysis", type=Path, default=None,
                        help="Hallo checkpoints only: insightface models folder (Hallo's "
                        "pretrained_models/face_analysis, with a detector and a recognizer .onnx)")
    parser.add_argument("--separate-vocals", type=Path, default=None, metavar="MODEL.onnx",
                        help="optional: isolate the voice before wav2vec with an MDX-Net model "
                        "(Hallo's audio_separator/Kim_Vocal_2.onnx); off by default")


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = GenerationSettings()
    parser.add_argument("--fps", type=float, default=defaults.fps,
                        help=f"video frame rate, {FPS_RANGE[0]:g} to {FPS_RANGE[1]:g} frames per "
                        "second, fractional allowed (e.g. 12.5, 24, 25, 29.97, 30, 60)")
    parser.add_argument("--steps", type=int, default=defaults.steps,
                        help="denoising steps per clip: more is slower and cleaner (paper: 40)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="random seed; the same seed and inputs give identical frames")
    parser.add_argument("--guidance-reference", type=float, default=defaults.guidance_reference,
                        help="how strongly the output follows the reference identity "
                        "(1 = no guidance; higher = more faithful, can oversaturate)")
    parser.add_argument("--guidance-audio", type=float, default=defaults.guidance_audio,
                        help="how strongly lips/expression follow the audio "
                        "(1 = no guidance; higher = stronger lip motion, can exaggerate)")
    parser.add_argument("--guidance-mode", choices=("separate", "joint"),
                        default=defaults.guidance_mode,
                        help="separate: 3 branches, one scale each; joint: 2 branches, "
                        "--guidance-reference used for both (faster)")
    parser.add_argument("--guidance-start", type=float, default=defaults.guidance_start,
                        help="fraction of the steps (0..1, noisiest first) where guidance starts")
    parser.add_argument("--guidance-end", type=float, default=defaults.guidance_end,
                        help="fraction of the steps (0..1) where guidance ends; later steps run "
                        "the conditional branch alone (1 = guidance at every step, slowest)")
    parser.add_argument("--guidance-refresh", type=int, default=defaults.guidance_refresh,
                        help="run the guidance branches every N-th step inside the interval and "
                        "reuse their last difference in between (1 = every step)")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--speed", type=float, default=None,
                       help="constant head rotation speed in degrees/frame (default 2.0)")
    speed.add_argument("--speed-keyframes", default=None,
                       help='speed curve "seconds:deg_per_frame, ..." e.g. "0:1.0, 3.5:6.0", '
                       "linear in between")
    speed.add_argument("--speed-from-video", type=Path, default=None,
                       help="measure head speed on a driving video with MediaPipe")
    parser.add_argument("--frames-per-clip", type=int, default=defaults.frames_per_clip,
                        help="frames generated per clip (paper: 12); more = fewer seams, more memory")
    parser.add_argument("--motion-frames", type=int, default=defaults.motion_frames,
                        help="previous-clip frames fed back for continuity (default: the "
                        "checkpoint's own count; paper: 4)")
    parser.add_argument("--first-clip-motion", choices=("zeros", "reference"),
                        default=defaults.first_clip_motion,
                        help="motion frames of the first clip: zero maps (paper) or reference copies")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default=defaults.scheduler,
                        help="sampler; ddim is the paper's; ddim-vpred-trailing for v-prediction "
                        "weights; dpmpp-2m/unipc give good results in fewer steps")
    parser.add_argument("--size", type=int, default=defaults.size,
                        help="square generation size in pixels (multiple of 64; model trained at 512)")
    parser.add_argument("--face-index", type=int, default=0,
                        help="which face to animate when the photo has several (0 = leftmost)")
    parser.add_argument("--mask-expand", type=float, default=DEFAULT_MASK_EXPAND,
                        help=MASK_EXPAND_HELP.replace("%", "%%"))
    parser.add_argument("--paste-back", action="store_true",
                        help="composite the generated face crop back into the full original image")
    parser.add_argument("--allow-silence", action="store_true",
                        help="generate even when the audio is completely silent (near-still face)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                        help="auto = fp16 on GPU, fp32 on CPU")


def settings_from_args(args) -> GenerationSettings:
    return GenerationSettings(
        fps=args.fps, steps=args.steps, seed=args.seed,
        guidance_reference=args.guidance_reference, guidance_audio=args.guidance_audio,
        guidance_mode=args.guidance_mode, guidance_start=args.guidance_start,
        guidance_end=args.guidance_end, guidance_refresh=args.guidance_refresh,
        frames_per_clip=args.frames_per_clip,
        motion_frames=args.motion_frames, first_clip_motion=args.first_clip_motion,
        scheduler=args.scheduler, size=args.size,
    )


def request_from_args(args, **overrides):
    from ..pipeline.run import GenerateRequest

    values = dict(
        checkpoint=args.checkpoint, wav2vec=args.wav2vec, mediapipe=args.mediapipe,
        image=args.image, audio=args.audio, out=args.out, settings=settings_from_args(args),
        speed=args.speed, speed_keyframes=args.speed_keyframes, speed_video=args.speed_from_video,
        face_index=args.face_index, mask_expand=args.mask_expand, paste_back=args.paste_back,
        allow_silence=args.allow_silence, device=args.device,
        dtype=args.dtype, face_analysis=args.face_analysis, separate_vocals=args.separate_vocals,
    )
    if style_requested(args):
        values["prepare_models"] = lambda models: _apply_style(models, args)
    values.update(overrides)
    return GenerateRequest(**values)


def _apply_style(models, args) -> None:
    report = apply_style_from_args(models, args)
    print(f"style: {report.describe()}")


def style_files(args) -> list[tuple[str, Path]]:
    """The style weight files named on the command line, as ``(option, path)``."""
    files = [(option, path) for option, path in (("--style-checkpoint", args.style_checkpoint),
                                                 ("--base-checkpoint", args.base_checkpoint))
             if path is not None]
    return files + [("--lora", path) for path, _ in args.lora]


def run(args) -> int:
    from ..pipeline.preflight import preflight_request
    from ..pipeline.run import generate_video

    request = request_from_args(args)
    preflight_request(request, style_files(args))  # every input checked before any model loads
    with TqdmProgress() as progress:
        out = generate_video(request, progress=progress,
                             cancel=stop_signals.raise_if_stopped)
    print(f"wrote {out}")
    return 0
