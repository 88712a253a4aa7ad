"""Delta sources from files: SD1.5 style/base checkpoints (read lazily) plus LoRA files.

``CheckpointDeltaSource`` implements :class:`~emo_core.style.deltas.DeltaSource`:
``delta = (style + sum_i w_i * lora_i) - base``; without a base the EMO weight itself is the base
(``style - emo``: the style replaces the EMO weights in proportion to the strength); without a
style only the LoRA deltas are added. ``.safetensors`` files are opened with ``safe_open`` and
read one tensor per call, so neither UNet is ever fully in memory; legacy pickles (``.ckpt``)
cannot be read lazily and are loaded whole (``weights_only=True``), which the log says.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import safe_open

from ..errors import CheckpointError, EMOInputError
from ..io.safe_load import SAFETENSORS_SUFFIXES, load_state_dict, read_safetensors_shapes
from ..io.validate import check_finite, check_float_dtypes, header_dtypes
from .architecture import check_sd15_unet
from .ldm_keys import ldm_to_diffusers_names
from .lora import LoraFile, load_lora
from .spatial import spatial_shapes

logger = logging.getLogger(__name__)

_DIFFUSERS_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def _resolve(path: Path, what: str) -> Path:
    """A single file as given, or the UNet file of a diffusers folder."""
    if path.is_dir():
        for folder in (path / "unet", path):
            for name in _DIFFUSERS_FILES:
                if (folder / name).is_file():
                    return folder / name
        raise CheckpointError(f"{what}: folder {str(path)!r} has no unet/{_DIFFUSERS_FILES[0]}; "
                              "pass an SD1.5 single file (.safetensors) or a diffusers folder")
    if not path.is_file():
        raise CheckpointError(f"{what}: file {str(path)!r} does not exist; check the path")
    return path


def _header_dtypes(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return header_dtypes(handle)
    except Exception as error:  # safetensors raises its own error types for damaged headers
        raise CheckpointError(f"weight file {str(path)!r} could not be read ({error}); it is "
                              "truncated or corrupt: copy it again") from None


class UNetWeightFile:
    """One SD1.5 checkpoint's UNet tensors by diffusers name, read on demand."""

    def __init__(self, path: str | Path, unet_config: Mapping, what: str):
        self.path = _resolve(Path(path), what)
        self.what = what
        self._handle = None
        lazy = self.path.suffix.lower() in SAFETENSORS_SUFFIXES
        if lazy:
            self._tensors = None
            file_shapes = read_safetensors_shapes(self.path)
            dtypes = _header_dtypes(self.path)
        else:
            logger.info("%s is not .safetensors: loading it whole (%s)", what, self.path.name)
            self._tensors = load_state_dict(self.path)
            file_shapes = {k: tuple(v.shape) for k, v in self._tensors.items()}
            dtypes = {k: v.dtype for k, v in self._tensors.items()}
        kind = check_sd15_unet(file_shapes, unet_config, what)
        wanted = spatial_shapes(unet_config)
        if kind == "ldm":
            names = ldm_to_diffusers_names(file_shapes, unet_config)
            self.names = {d: f for f, d in names.items() if d in wanted}
        else:
            self.names = {k: k for k in file_shapes if k in wanted}
        self.shapes = {d: file_shapes[f] for d, f in self.names.items()}
        float_weights = {f: torch.empty(0) for f in self.names.values()}  # all UNet weights float
        check_float_dtypes(float_weights, dtypes, what, "use an SD1.5 checkpoint with F16, BF16 "
                           "or F32 weights")
        unet_keys = [k for k in file_shapes if kind == "diffusers" or k.startswith(
            "model.diffusion_model.")]
        self.skipped = sorted(set(unet_keys) - set(self.names.values()))

    def get(self, key: str) -> torch.Tensor:
        """The tensor for diffusers name ``key`` (CPU, file dtype)."""
        name = self.names[key]
        if self._tensors is not None:
            check_finite({name: self._tensors[name]}, self.what,
                         "use an undamaged copy of the checkpoint")
            return self._tensors[name]
        if self._handle is None:
            # One memory-mapped handle for all reads: get_tensor copies just that tensor out.
            self._handle = safe_open(str(self.path), framework="pt", device="cpu")
        tensor = self._handle.get_tensor(name)
        check_finite({name: tensor}, self.what, "use an undamaged copy of the checkpoint")
        return tensor

    def close(self) -> None:
        """Release the file handle (also released when the object is garbage-collected)."""
        self._handle = None


class CheckpointDeltaSource:
    """``(style + sum w_i lora_i) - base`` per diffusers UNet parameter name."""

    def __init__(self, unet_config: Mapping, style: str | Path | None = None,
                 base: str | Path | None = None,
                 loras: Sequence[tuple[str | Path, float]] = ()):
        if base is not None and style is None:
            raise EMOInputError("--base-checkpoint needs --style-checkpoint (the base is what "
                                "is subtracted from the style); a LoRA alone needs no base")
        if style is None and not loras:
            raise EMOInputError("no style given: pass --style-checkpoint FILE and/or "
                                "--lora FILE:STRENGTH")
        self.style = UNetWeightFile(style, unet_config, f"style checkpoint {style}") if style \
            else None
        self.base = UNetWeightFile(base, unet_config, f"base checkpoint {base}") if base else None
        wanted = spatial_shapes(unet_config)
        self.loras: list[tuple[LoraFile, float]] = [
            (load_lora(path, wanted, unet_config), float(w)) for path, w in loras]
        self.needs_current = self.style is not None and self.base is None
        self.skipped = list(self.style.skipped) if self.style else []
        parts = [str(style)] if style else []
        parts += [f"LoRA {Path(p).name} x{w:g}" for p, w in loras]
        self.what = " + ".join(parts) + (f" - {base}" if base else "")
        self._check_base()

    def _check_base(self) -> None:
        if self.style is None or self.base is None:
            return
        differ = sorted(k for k in self.style.shapes
                        if self.base.shapes.get(k) != self.style.shapes[k])
        if differ:
            raise CheckpointError(
                f"style and base checkpoints do not have the same UNet ({len(differ)} tensors "
                f"differ or are missing, first: {differ[:3]}); the base must be the model the "
                "style was fine-tuned from (usually plain SD1.5)")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        out = dict(self.style.shapes) if self.style else {}
        for lora, _ in self.loras:
            out.update(lora.shapes)
        return out

    @torch.no_grad()
    def delta(self, key: str, current: torch.Tensor, device) -> torch.Tensor:
        shape = current.shape
        if self.style is not None and key in self.style.names:
            # Out of place: get() may hand out the file's memory map itself (safetensors), and
            # an in-place subtraction would change what the next read of this key returns.
            style = self.style.get(key).to(device=device, dtype=torch.float32)
            base = self.base.get(key) if self.base is not None else current.detach()
            delta = style - base.to(device=device, dtype=torch.float32)
        else:
            delta = torch.zeros(shape, dtype=torch.float32, device=device)
        for lora, weight in self.loras:
            if key in lora.layers:
                delta += weight * lora.delta(key, shape, device)
        return delta

