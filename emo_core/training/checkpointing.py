"""Exact-resume training checkpoints, written as safetensors + JSON only (nothing is pickled).

``accelerate.save_state`` stores the RNG states and registered objects as pickles that
``load_state`` reads with ``weights_only=False``; this package never unpickles, so the trainer
saves the same content itself:

    step-000100/
      emo.safetensors        the full EMO checkpoint (loadable by generate / the next stage)
      training.safetensors   optimizer tensors, EMA shadow weights, torch RNG + noise generator
      training.json          step, samples consumed, optimizer/scheduler/EMA scalars, python RNG

Every file is written to a temporary name and renamed; the folder itself appears last. In a
multi-process run only the main process writes: every rank holds the same weights, optimizer
state and noise generator (the ranks draw the same global-batch randomness, see ``step.py``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

logger = logging.getLogger(__name__)


def _split_state(state, prefix: str, tensors: dict) -> object:
    """Nested dict/list state -> JSON-able structure; tensors moved into ``tensors`` by name."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(state, dict):
        return {"__dict__": [[_key(k), _split_state(v, f"{prefix}.{k}", tensors)]
                             for k, v in state.items()]}
    if isinstance(state, (list, tuple)):
        return {"__list__": [_split_state(v, f"{prefix}.{i}", tensors)
                             for i, v in enumerate(state)], "tuple": isinstance(state, tuple)}
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise TypeError(f"cannot store {type(state).__name__} at {prefix} in a training checkpoint")


def _key(key):
    if isinstance(key, (int, str)):
        return key
    raise TypeError(f"state dict key {key!r} must be int or str")


def _join_state(spec, tensors: dict):
    if isinstance(spec, dict) and "__tensor__" in spec:
        return tensors[spec["__tensor__"]]
    if isinstance(spec, dict) and "__dict__" in spec:
        return {k: _join_state(v, tensors) for k, v in spec["__dict__"]}
    if isinstance(spec, dict) and "__list__" in spec:
        items = [_join_state(v, tensors) for v in spec["__list__"]]
        return tuple(items) if spec.get("tuple") else items
    return spec


def _python_rng() -> list:
    version, state, gauss = random.getstate()
    return [version, list(state), gauss]


def save_training_state(folder: Path, *, step: int, samples: int, optimizer, lr_scheduler,
                        ema, generator: torch.Generator) -> None:
    """Write ``training.safetensors`` + ``training.json`` into ``folder`` (which must exist)."""
    tensors: dict[str, torch.Tensor] = {}
    numpy_rng = np.random.get_state()
    spec = {
        "step": step,
        "samples": samples,
        "optimizer": _split_state(optimizer.state_dict(), "optimizer", tensors),
        "lr_scheduler": _split_state(lr_scheduler.state_dict(), "lr_scheduler", tensors),
        "ema": _split_state(ema.state_dict(), "ema", tensors) if ema is not None else None,
        "python_rng": _python_rng(),
        "numpy_rng": [numpy_rng[0], numpy_rng[2], numpy_rng[3], numpy_rng[4]],
    }
    tensors["rng.torch"] = torch.random.get_rng_state()
    tensors["rng.generator"] = generator.get_state()
    tensors["rng.numpy"] = torch.from_numpy(numpy_rng[1].astype(np.int64))
    _atomic(folder / "training.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    _atomic(folder / "training.json",
            lambda tmp: tmp.write_text(json.dumps(spec), encoding="utf-8"))


def load_training_state(folder: Path, *, optimizer, lr_scheduler, ema,
                        generator: torch.Generator) -> tuple[int, int]:
    """Restore everything ``save_training_state`` wrote; returns ``(step, samples)``."""
    json_path = folder / "training.json"
    tensor_path = folder / "training.safetensors"
    if not json_path.is_file() or not tensor_path.is_file():
        raise CheckpointError(f"{folder} is not a complete training checkpoint (needs "
                              f"{json_path.name} and {tensor_path.name}); pick another step-* "
                              "folder or start without --resume")
    spec = json.loads(json_path.read_text(encoding="utf-8"))
    tensors = load_file(str(tensor_path))
    optimizer.load_state_dict(_join_state(spec["optimizer"], tensors))
    lr_scheduler.load_state_dict(_join_state(spec["lr_scheduler"], tensors))
    if ema is not None and spec["ema"] is not None:
        ema.load_state_dict(_join_state(spec["ema"], tensors))
    torch.random.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.generator"])
    version, state, gauss = spec["python_rng"]
    random.setstate((version, tuple(state), gauss))
    kind, pos, has_gauss, cached = spec["numpy_rng"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss,
                         cached))
    return int(spec["step"]), int(spec["samples"])


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def check_folder_paths(*paths: Path) -> None:
    """Raise :class:`CheckpointError` if one of ``paths`` is taken by something not a folder."""
    for path in paths:
        if path.exists() and not path.is_dir():
            raise CheckpointError(f"cannot write the checkpoint: {path} exists and is not a "
                                  "folder; move it out of the output_dir")


def publish_folder(staging: Path, final: Path) -> Path:
    """Rename a fully written staging folder into place (replacing an older one)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return final


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The ``step-*`` folder with the highest step, or None."""
    steps = sorted(output_dir.glob("step-*"), key=lambda p: int(p.name.split("-")[1])
                   if p.name.split("-")[1].isdigit() else -1)
    complete = [p for p in steps if (p / "training.json").is_file()]
    return complete[-1] if complete else None
