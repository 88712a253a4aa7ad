"""Talking-head videos -> training shards (``python -m emo_core prepare-data``).

Per video: frames resampled to ``fps`` (PyAV), MediaPipe face boxes per frame, one face-centred
square crop for the whole clip (from the union of the boxes, so the crop does not shake), the crop
resized to ``size``, per-frame head rotation speed (deg/frame, MediaPipe face landmarker), per-frame
wav2vec features of every layer, all written to streaming shards (``shards.py``). One video is in
memory at a time. Videos that cannot be used (unreadable, no audio stream, no face, too short) are
skipped and listed, with the reason, in ``report.json``; they never stop the run.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio.features import extract_audio_features
from ..audio.waveform import load_audio_file
from ..errors import EMOInputError, NoFaceError
from ..face.crop import box_to_crop, crop_image, face_crop_box
from ..face.detect import FaceBox, FaceDetector
from ..face.head_pose import head_rotation_speeds
from ..face.mask import union_box
from ..video_io import read_video_frames
from .shards import ShardWriter

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
MIN_FACE_FRACTION = 0.5  # fewer frames with a face than this: not a talking-head clip


class SkipVideo(Exception):
    """A video that cannot be used; the message is the reason written to the report."""


@dataclass
class PrepReport:
    prepared: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"prepared": self.prepared, "skipped": self.skipped,
                "num_prepared": len(self.prepared), "num_skipped": len(self.skipped)}


def find_videos(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise EMOInputError(f"--videos {str(folder)!r} is not a folder; pass the folder that "
                            f"holds the talking-head videos ({', '.join(VIDEO_SUFFIXES)})")
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise EMOInputError(f"--videos {str(folder)!r} holds no {'/'.join(VIDEO_SUFFIXES)} files")
    return videos


def _has_audio(path: Path) -> bool:
    import av

    with av.open(str(path)) as container:
        return bool(container.streams.audio)


def face_boxes(frames: np.ndarray, model_dir) -> list[FaceBox]:
    """``(F, H, W, 3)`` -> one box per frame (the largest face); gaps take the nearest found box.

    Raises :class:`SkipVideo` when fewer than half the frames show a face.
    """
    found: list[FaceBox | None] = []
    with FaceDetector(model_dir) as detector:
        for frame in frames:
            boxes = detector.detect(frame)
            found.append(max(boxes, key=lambda b: b.area) if boxes else None)
    have = [i for i, box in enumerate(found) if box is not None]
    if len(have) < MIN_FACE_FRACTION * len(found):
        raise SkipVideo(f"no face in {len(found) - len(have)} of {len(found)} frames")
    return [box if box is not None else found[min(have, key=lambda j: abs(j - i))]
            for i, box in enumerate(found)]


def prepare_video(path: Path, wav2vec, model_dir, fps: float, size: int,
                  min_frames: int) -> dict[str, torch.Tensor]:
    """One video -> shard tensors ``frames (F, S, S, 3) uint8, audio (F, L, C) float16,
    speed (F,), boxes (F, 4)`` (boxes in crop pixels). Raises :class:`SkipVideo`."""
    try:
        if not _has_audio(path):
            raise SkipVideo("no audio stream")
        frames = read_video_frames(path, fps=fps)
        waveform, rate = load_audio_file(path)
    except SkipVideo:
        raise
    except EMOInputError as error:
        raise SkipVideo(f"unreadable: {error}") from None
    except Exception as error:  # PyAV raises many types for damaged files
        raise SkipVideo(f"unreadable: {type(error).__name__}: {error}") from None
    try:
        audio = extract_audio_features(wav2vec, waveform, rate, fps, window=0)
    except EMOInputError as error:
        raise SkipVideo(f"audio unusable: {error}") from None
    count = min(len(frames), audio.num_frames)
    if count < min_frames:
        raise SkipVideo(f"too short: {count} frames at {fps:g} fps, need {min_frames}")
    frames = frames[:count]
    boxes = face_boxes(frames, model_dir)
    crop = face_crop_box(union_box(boxes), frames.shape[1:3], out_size=size)
    cropped = np.stack([crop_image(frame, crop) for frame in frames])
    try:
        speeds = head_rotation_speeds(cropped, model_dir)
    except NoFaceError as error:
        raise SkipVideo(f"no face for head pose: {error}") from None
    crop_boxes = [box_to_crop(box, crop) for box in boxes]
    return {
        "frames": torch.from_numpy(cropped),
        "audio": audio.frame_features[:count].contiguous().half(),
        "speed": torch.from_numpy(np.asarray(speeds, dtype=np.float32)),
        "boxes": torch.tensor([[b.x, b.y, b.w, b.h] for b in crop_boxes], dtype=torch.float32),
    }


def prepare_data(videos_dir, out_dir, wav2vec, model_dir, fps: float = 25.0, size: int = 512,
                 min_frames: int = 16, max_shard_bytes: int = 256 * 2**20) -> PrepReport:
    """Prepare every video under ``videos_dir``; write shards + ``report.json`` to ``out_dir``."""
    if size % 64 or size < 64:
        raise EMOInputError(f"--size must be a multiple of 64 (>= 64), got {size}")
    if not 1 <= fps <= 120:
        raise EMOInputError(f"--fps must be between 1 and 120, got {fps}")
    report = PrepReport()
    videos = find_videos(videos_dir)
    with ShardWriter(out_dir, max_bytes=max_shard_bytes,
                     info={"source": str(videos_dir), "fps": fps, "size": size}) as writer:
        for number, path in enumerate(videos):
            logger.info("video %d/%d: %s", number + 1, len(videos), path.name)
            try:
                tensors = prepare_video(path, wav2vec, model_dir, fps, size, min_frames)
            except SkipVideo as reason:
                logger.warning("skipped %s: %s", path, reason)
                report.skipped.append({"video": str(path), "reason": str(reason)})
                continue
            frames = int(tensors["frames"].shape[0])
            writer.add(tensors, {"source": str(path), "fps": fps})
            report.prepared.append({"video": str(path), "frames": frames,
                                    "mean_speed": float(tensors["speed"].mean())})
    _write_report(Path(out_dir) / "report.json", report)
    return report


def _write_report(path: Path, report: PrepReport) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report.as_dict(), indent=1), encoding="utf-8")
    os.replace(tmp, path)
