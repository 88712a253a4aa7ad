"""Write and read EchoMimic-family checkpoints: one ``.safetensors`` in the EMO checkpoint format.

Metadata ``emo_format`` = "1" and ``emo_config`` = ``EchoMimicModels.component_configs()``
(``backbone.variant`` = "echomimic" names the family; ``sampling`` carries the EchoMimic
variant, normal or acc, and its defaults). Reading goes through the one EMO checkpoint loader
(``io.emo_checkpoint.load_emo_checkpoint``: bounds, meta-device build, header names / shapes /
dtypes, finite values, strict load), which builds the family's container.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import CheckpointError
from .emo_checkpoint import EMO_FORMAT, load_emo_checkpoint
from .safe_load import metadata_json, save_safetensors_atomic

HINT = ("convert EchoMimic's weights with `python -m emo_core convert-echomimic "
        "--pretrained-weights DIR [--acc] --out FILE.safetensors`")


def save_echomimic(tensors: dict[str, torch.Tensor], configs: dict, path: str | os.PathLike
                   ) -> Path:
    """Write ``tensors`` + ``configs`` atomically (temp file + rename)."""
    metadata = {"emo_format": EMO_FORMAT, "emo_config": metadata_json(configs)}
    return save_safetensors_atomic(tensors, path, metadata)


def load_echomimic_checkpoint(path: str | os.PathLike, device="cpu",
                              dtype: torch.dtype = torch.float32):
    """``load_emo_checkpoint`` that also insists the file is of the EchoMimic family."""
    from ..models.echomimic_models import EchoMimicModels

    models = load_emo_checkpoint(path, device=device, dtype=dtype)
    if not isinstance(models, EchoMimicModels):
        raise CheckpointError(f"{str(path)!r} is not an EchoMimic checkpoint; {HINT}")
    return models
