"""``python -m emo_core generate``: portrait + audio -> talking-head mp4."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..face.mask_expand import DEFAULT_MASK_EXPAND, MASK_EXPAND_HELP
from . import stop_signals
from .help_format import HelpFormatter
from .progress import TqdmProgress
from .settings_args import add_settings_arguments, settings_from_args
from .style_args import add_style_arguments, apply_style_from_args, style_requested


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "generate",
        help="generate a talking/singing video from one portrait and one audio file",
        description="Generate a talking/singing video: the face in IMAGE speaks AUDIO. Output is an "
        "H.264 + AAC mp4 with exactly audio seconds x fps frames, rounded half up (2.5 -> 3), "
        "written atomically.",
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
    parser.add_argument("--wav2vec", type=Path, default=None,
                        help="Hugging Face wav2vec2 folder (e.g. facebook/wav2vec2-base-960h); "
                        "required except for EchoMimic checkpoints (whisper is inside them)")
    parser.add_argument("--mediapipe", type=Path, required=True,
                        help="folder with blaze_face_short_range.tflite and face_landmarker.task")
    parser.add_argument("--face-analysis", type=Path, default=None,
                        help="Hallo checkpoints only: insightface models folder (Hallo's "
                        "pretrained_models/face_analysis, with a detector and a recognizer .onnx)")
    parser.add_argument("--separate-vocals", type=Path, default=None, metavar="MODEL.onnx",
                        help="optional: isolate the voice before wav2vec with an MDX-Net model "
                        "(Hallo's audio_separator/Kim_Vocal_2.onnx); off by default")


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)  # every GenerationSettings field, from its metadata
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--speed", type=float, default=None,
                       help="constant head rotation speed in degrees/frame (default 2.0)")
    speed.add_argument("--speed-keyframes", default=None,
                       help='speed curve "seconds:deg_per_frame, ..." e.g. "0:1.0, 3.5:6.0", '
                       "linear in between")
    speed.add_argument("--speed-from-video", type=Path, default=None,
                       help="measure head speed on a driving video with MediaPipe")
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


def input_paths(args) -> list[tuple[str, Path]]:
    """Every file or folder ``generate`` reads, as ``(option, path)``."""
    return [("--image", args.image), ("--audio", args.audio), ("--checkpoint", args.checkpoint),
            ("--wav2vec", args.wav2vec), ("--mediapipe", args.mediapipe),
            ("--face-analysis", args.face_analysis), ("--separate-vocals", args.separate_vocals),
            ("--speed-from-video", args.speed_from_video), *style_files(args)]


def run(args) -> int:
    from .output_guard import refuse_output_over_inputs
    from .quick_checks import quick_generate_checks

    refuse_output_over_inputs([("--out", args.out)], input_paths(args))
    quick_generate_checks(args)  # options, paths, headers: before torch is imported
    from ..pipeline.preflight import preflight_request
    from ..pipeline.run import generate_video

    request = request_from_args(args)
    preflight_request(request, style_files(args))  # every input checked before any model loads
    with TqdmProgress() as progress:
        out = generate_video(request, progress=progress,
                             cancel=stop_signals.raise_if_stopped)
    print(f"wrote {out}")
    return 0
