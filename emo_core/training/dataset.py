"""Training samples cut from streamed clips: reference + motion frames + target frames + conditions.

Per sample (``f`` target frames, ``n`` motion frames, ``m`` audio window):

- ``reference``: one frame of the same clip: ``(4, h, w)`` latents or ``(3, S, S)`` in [-1, 1]
- ``motion``: the ``n`` frames just before the target frames, ``(n, ...)`` (absent when n = 0)
- ``target``: ``(f, ...)``
- ``audio``: ``(f, 2m+1, L, C)`` windows of the clip's per-frame wav2vec features (edges clamped)
- ``speed``: ``(f,)`` deg/frame; ``mask``: ``(1, S, S)`` union of the target frames' face boxes.

Stage 1 uses ``f = 1`` and ``n = 0`` (image pairs from the same clip). Clips store either
``latents`` (pre-encoded) or ``frames`` (uint8 RGB); ``pixel_space`` in the sample says which.
"""

from __future__ import annotations

import logging
import random

import torch
from torch.utils.data import IterableDataset

from .shards import ShardClips

logger = logging.getLogger(__name__)


def audio_windows(features: torch.Tensor, frames: torch.Tensor, window: int) -> torch.Tensor:
    """``features: (F, L, C)``, ``frames: (f,)`` indices -> ``(f, 2*window+1, L, C)``."""
    offsets = torch.arange(-window, window + 1)
    index = (frames[:, None] + offsets).clamp(0, features.shape[0] - 1)
    return features[index].float()


def box_mask(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``boxes: (k, 4)`` x, y, w, h in crop pixels -> ``(1, size, size)`` union mask (0/1)."""
    mask = torch.zeros(1, size, size)
    x0 = int(boxes[:, 0].min().clamp(0, size).floor())
    y0 = int(boxes[:, 1].min().clamp(0, size).floor())
    x1 = int((boxes[:, 0] + boxes[:, 2]).max().clamp(0, size).ceil())
    y1 = int((boxes[:, 1] + boxes[:, 3]).max().clamp(0, size).ceil())
    mask[:, y0:y1, x0:x1] = 1.0
    return mask


def _images(clip: dict, index) -> torch.Tensor:
    """Frames at ``index`` as latents ``(..., 4, h, w)`` or pixels ``(..., 3, S, S)`` in [-1, 1]."""
    if "latents" in clip:
        return clip["latents"][index].float()
    pixels = clip["frames"][index]
    return pixels.movedim(-1, -3).float() / 127.5 - 1.0


def cut_sample(clip: dict, rng: random.Random, frames: int, motion: int,
               window: int = 2) -> dict[str, torch.Tensor] | None:
    """One training sample from ``clip``; None if the clip is shorter than ``frames + motion``."""
    total = int(next(iter(clip.values())).shape[0])
    span = frames + motion
    if total < max(span, 2):
        return None
    start = rng.randrange(0, total - span + 1)
    target = torch.arange(start + motion, start + span)
    # The reference is another frame of the same clip (stage 1: never the target itself).
    choices = [i for i in range(total) if i not in set(target.tolist())] or list(range(total))
    reference = rng.choice(choices)
    sample = {
        "reference": _images(clip, reference),
        "target": _images(clip, target),
        "audio": audio_windows(clip["audio"].float(), target, window),
        "speed": clip["speed"][target].float(),
        "pixel_space": torch.tensor("latents" not in clip),
    }
    if motion:
        sample["motion"] = _images(clip, torch.arange(start, start + motion))
    size = int(clip["latents"].shape[-1] * 8 if "latents" in clip else clip["frames"].shape[-2])
    sample["mask"] = box_mask(clip["boxes"][target].float(), size)
    return sample


class TrainSamples(IterableDataset):
    """Streams samples: ``samples_per_clip`` cuts from every clip, through a shuffle buffer.

    Multi-process training: every rank streams the same global sequence (same ``seed``) and keeps
    ``per_rank`` samples out of every ``per_rank * world``, the ones at its ``rank``, so
    ``world`` processes with batch ``per_rank`` see exactly the global batches one process with
    batch ``per_rank * world`` sees. Each rank reads every shard (I/O x ranks, memory unchanged).
    """

    def __init__(self, folder, frames: int, motion: int, seed: int = 0, window: int = 2,
                 samples_per_clip: int = 4, buffer: int = 64, epochs: int | None = None,
                 rank: int = 0, world: int = 1, per_rank: int = 1):
        if not 0 <= rank < world or per_rank < 1:
            raise ValueError(f"rank {rank} of {world} processes with {per_rank} samples each "
                             "is not a valid split")
        self.clips = ShardClips(folder, seed=seed, epochs=epochs)
        self.frames, self.motion, self.window = frames, motion, window
        self.samples_per_clip, self.buffer, self.seed = samples_per_clip, buffer, seed
        self.rank, self.world, self.per_rank = rank, world, per_rank

    def __iter__(self):
        for number, sample in enumerate(self._global_samples()):
            if (number // self.per_rank) % self.world == self.rank:
                yield sample

    def _global_samples(self):
        """The sample sequence of one process, independent of rank and world size."""
        rng = random.Random(self.seed)
        pool: list = []
        skipped = 0
        for clip, meta in self.clips:
            for _ in range(self.samples_per_clip):
                sample = cut_sample(clip, rng, self.frames, self.motion, self.window)
                if sample is None:
                    skipped += 1
                    if skipped in (1, 100):
                        logger.warning("clip %s has %d frames, fewer than %d; skipped",
                                       meta.get("source"), meta.get("num_frames"),
                                       self.frames + self.motion)
                    break
                pool.append(sample)
            while len(pool) > self.buffer:
                yield pool.pop(rng.randrange(len(pool)))
        rng.shuffle(pool)
        yield from pool
