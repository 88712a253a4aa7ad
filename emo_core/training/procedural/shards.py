"""Write procedural clips into the training shard format (same layout prepare-data writes)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ...audio.features import extract_audio_features
from ..shards import ShardWriter
from ..step import encode_frames
from .clips import SAMPLE_RATE, make_clip

logger = logging.getLogger(__name__)


def clip_tensors(clip, wav2vec, fps: float = 25.0, vae=None) -> dict[str, torch.Tensor]:
    """One clip -> shard tensors: ``frames`` (or ``latents`` when ``vae`` is given), per-frame
    wav2vec layers ``audio: (F, L, C)`` float16, ``speed: (F,)``, ``boxes: (F, 4)``."""
    features = extract_audio_features(wav2vec, torch.from_numpy(clip.waveform), SAMPLE_RATE, fps,
                                      window=0)
    frames = torch.from_numpy(clip.frames)
    if features.num_frames != frames.shape[0]:
        raise ValueError(f"audio gives {features.num_frames} frames, video has {frames.shape[0]}")
    tensors = {
        "audio": features.frame_features.contiguous().half(),
        "speed": torch.from_numpy(clip.speed).float(),
        "boxes": torch.from_numpy(clip.boxes).float(),
        "opening": torch.from_numpy(clip.opening).float(),
    }
    if vae is None:
        tensors["frames"] = frames
    else:
        pixels = frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        tensors["latents"] = encode_frames(vae, pixels)
    return tensors


def write_procedural_shards(out_dir, identity_seeds, num_frames: int, wav2vec, size: int = 64,
                            fps: float = 25.0, vae=None, max_speed: float = 5.0,
                            seed: int = 0, clips_per_shard: int = 64) -> int:
    """One clip per identity seed (audio seed and head speed drawn from ``seed``); returns the
    number of clips written."""
    rng = np.random.default_rng(seed)
    count = 0
    bytes_per_clip = num_frames * size * size * 3
    with ShardWriter(out_dir, max_bytes=clips_per_shard * bytes_per_clip, overwrite=True,
                     info={"source": "procedural", "fps": fps, "size": size}) as writer:
        for identity_seed in identity_seeds:
            audio_seed = int(rng.integers(2**31))
            speed = float(rng.uniform(0, max_speed))
            clip = make_clip(int(identity_seed), audio_seed, num_frames, speed, size, fps)
            writer.add(clip_tensors(clip, wav2vec, fps, vae),
                       {"source": f"identity-{identity_seed}", "audio_seed": audio_seed,
                        "speed": speed})
            count += 1
    logger.info("wrote %d procedural clips to %s", count, out_dir)
    return count
