"""``python -m emo_core prepare-data``: talking-head videos -> training shards + report.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from .help_format import HelpFormatter

SAMPLES_MEDIAPIPE = Path(__file__).resolve().parents[1] / "samples" / "mediapipe"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prepare-data", help="turn talking-head videos into training shards",
        description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--videos", type=Path, required=True,
                        help="folder of .mp4/.mov/.mkv talking-head videos (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="shard folder to create")
    parser.add_argument("--wav2vec", type=Path, required=True,
                        help="Hugging Face wav2vec2 folder (e.g. facebook/wav2vec2-base-960h)")
    parser.add_argument("--mediapipe", type=Path, default=SAMPLES_MEDIAPIPE,
                        help="folder with blaze_face_short_range.tflite + face_landmarker.task")
    parser.add_argument("--fps", type=float, default=25.0, help="target frame rate")
    parser.add_argument("--size", type=int, default=512, help="face crop side in pixels")
    parser.add_argument("--min-frames", type=int, default=16,
                        help="shorter videos are skipped (need at least frames + motion frames)")
    return parser


def run(args) -> int:
    from .output_guard import refuse_output_over_inputs

    inputs = [("--videos", args.videos), ("--wav2vec", args.wav2vec),
              ("--mediapipe", args.mediapipe)]
    refuse_output_over_inputs([("--out", args.out)], inputs, [("--out", args.out, None)])
    from ..io.wav2vec import load_wav2vec
    from ..training.data_prep import prepare_data

    wav2vec = load_wav2vec(args.wav2vec)
    report = prepare_data(args.videos, args.out, wav2vec, args.mediapipe, fps=args.fps,
                          size=args.size, min_frames=args.min_frames)
    print(f"prepared {len(report.prepared)} video(s), skipped {len(report.skipped)}; "
          f"report: {args.out / 'report.json'}")
    for item in report.skipped:
        print(f"  skipped {item['video']}: {item['reason']}")
    return 0
