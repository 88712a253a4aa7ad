"""Streaming shard format for training data: safetensors shard files + one JSON index.

Layout of a shard folder::

    index.json              {"format": 1, "shards": [{"file", "clips": [clip meta...]}], ...}
    shard-00000.safetensors tensors named "<clip>/<key>", e.g. "3/frames", "3/audio"

A clip is a dict of tensors with a leading frame axis (``frames: (F, S, S, 3) uint8`` or
``latents: (F, 4, h, w)``, ``audio: (F, L, C)``, ``speed: (F,)``, ``boxes: (F, 4)``) plus JSON
metadata. Writers fill a shard up to ``max_bytes`` and then start the next; readers load one
shard at a time, so memory never holds more than one shard (no whole-dataset RAM). Shard files
and the index are written to a temporary name and renamed, so a crash leaves no half file.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import EMOInputError

logger = logging.getLogger(__name__)

INDEX = "index.json"
FORMAT = 1
DEFAULT_MAX_BYTES = 256 * 2**20


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class ShardWriter:
    """``with ShardWriter(out_dir) as w: w.add(tensors, meta)``; the index is written on close.

    An existing index in ``out_dir`` is refused unless ``overwrite`` (no silent mixing of sets).
    """

    def __init__(self, out_dir, max_bytes: int = DEFAULT_MAX_BYTES, overwrite: bool = False,
                 info: dict | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if (self.out_dir / INDEX).exists() and not overwrite:
            raise EMOInputError(f"{self.out_dir} already holds a shard index; choose an empty "
                                "--out folder or delete index.json and its shards")
        self.max_bytes = int(max_bytes)
        self.info = dict(info or {})
        self.shards: list[dict] = []
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_meta: list[dict] = []
        self._pending_bytes = 0

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def add(self, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
        """Append one clip; every tensor must share the leading frame count."""
        frames = {int(t.shape[0]) for t in tensors.values()}
        if len(frames) != 1:
            raise ValueError(f"clip tensors disagree on the frame count: "
                             f"{ {k: tuple(v.shape) for k, v in tensors.items()} }")
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        if self._pending_meta and self._pending_bytes + size > self.max_bytes:
            self._flush()
        clip = len(self._pending_meta)
        for key, tensor in tensors.items():
            self._pending[f"{clip}/{key}"] = tensor.detach().cpu().contiguous()
        self._pending_meta.append(dict(meta or {}, num_frames=frames.pop(), keys=sorted(tensors)))
        self._pending_bytes += size

    def _flush(self) -> None:
        name = f"shard-{len(self.shards):05d}.safetensors"
        path = self.out_dir / name
        tmp = path.with_name(f".{name}.tmp")
        save_file(self._pending, str(tmp))
        os.replace(tmp, path)
        self.shards.append({"file": name, "clips": self._pending_meta})
        logger.info("wrote %s (%d clips, %.1f MB)", name, len(self._pending_meta),
                    self._pending_bytes / 2**20)
        self._pending, self._pending_meta, self._pending_bytes = {}, [], 0

    def close(self) -> Path:
        if self._pending_meta:
            self._flush()
        index = {"format": FORMAT, "info": self.info, "shards": self.shards,
                 "num_clips": sum(len(s["clips"]) for s in self.shards)}
        path = self.out_dir / INDEX
        _atomic_write_text(path, json.dumps(index, indent=1))
        return path


def read_index(folder) -> dict:
    """The parsed ``index.json`` of a shard folder, checked."""
    path = Path(folder) / INDEX
    if not path.is_file():
        raise EMOInputError(f"{folder} has no {INDEX}; create the training data with "
                            "`python -m emo_core prepare-data --videos DIR --out DIR`")
    index = json.loads(path.read_text(encoding="utf-8"))
    if index.get("format") != FORMAT:
        raise EMOInputError(f"{path} has shard format {index.get('format')!r}, expected {FORMAT}; "
                            "prepare the data again with this version")
    if not index.get("shards"):
        raise EMOInputError(f"{path} lists no shards (every video was skipped?); see the "
                            "prepare-data report")
    return index


def load_clips(folder, shard: dict) -> list[tuple[dict[str, torch.Tensor], dict]]:
    """All clips of one shard: ``[(tensors, meta)]``."""
    tensors = load_file(str(Path(folder) / shard["file"]))
    clips = []
    for number, meta in enumerate(shard["clips"]):
        clip = {key: tensors[f"{number}/{key}"] for key in meta["keys"]}
        clips.append((clip, meta))
    return clips


class ShardClips(IterableDataset):
    """Streams ``(tensors, meta)`` clips shard by shard, in a fresh shuffled order each epoch.

    ``epochs=None`` streams forever (training); with DataLoader workers each worker reads a
    disjoint subset of the shards.
    """

    def __init__(self, folder, seed: int = 0, epochs: int | None = None, shuffle: bool = True):
        self.folder = Path(folder)
        self.index = read_index(folder)
        self.seed = int(seed)
        self.epochs = epochs
        self.shuffle = shuffle

    def __iter__(self) -> Iterator[tuple[dict, dict]]:
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker else (0, 1)
        shards = self.index["shards"]
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            rng = random.Random(self.seed * 1000003 + epoch)
            order = list(range(len(shards)))
            if self.shuffle:
                rng.shuffle(order)
            for position in order[worker_id::workers]:
                clips = load_clips(self.folder, shards[position])
                if self.shuffle:
                    rng.shuffle(clips)
                yield from clips
            epoch += 1
