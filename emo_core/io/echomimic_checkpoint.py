"""Save and load EchoMimic-family checkpoints (one ``.safetensors``, same rules as EMO's).

Metadata: ``emo_format`` = "1" and ``emo_config`` = ``EchoMimicModels.component_configs()``
(``"family": "echomimic"``, component configs, ``sampling`` with the variant and EchoMimic's
defaults). Loading is all-or-nothing: config bounds, the model built on the meta device, every
name / shape / dtype in the header checked, then the tensors read (finite) and assigned.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import CheckpointError
from .conversion import compare_state_dicts, require_match
from .emo_checkpoint import EMO_FORMAT, _align, _header, resolve_checkpoint_path
from .safe_load import metadata_json, read_safetensors_metadata, save_safetensors_atomic
from .validate import (
    check_config_values,
    check_finite,
    check_float_dtypes,
    meta_element_count,
    parse_config_json,
)

logger = logging.getLogger(__name__)

HINT = ("convert EchoMimic's weights again with `python -m emo_core convert-echomimic "
        "--pretrained-weights DIR [--acc] --out FILE.safetensors`")


def is_echomimic_config(configs: object) -> bool:
    return isinstance(configs, dict) and configs.get("family") == "echomimic"


def save_echomimic(tensors: dict[str, torch.Tensor], configs: dict, path: str | os.PathLike
                   ) -> Path:
    """Write ``tensors`` + ``configs`` atomically (temp file + rename)."""
    metadata = {"emo_format": EMO_FORMAT, "emo_config": metadata_json(configs)}
    return save_safetensors_atomic(tensors, path, metadata)


def read_echomimic_configs(path: Path) -> dict:
    """The checked ``emo_config`` of an EchoMimic checkpoint; reads no tensor data."""
    metadata = read_safetensors_metadata(path)
    what = f"EchoMimic checkpoint {str(path)!r}: emo_config"
    if metadata.get("emo_format") != EMO_FORMAT or "emo_config" not in metadata:
        raise CheckpointError(f"{str(path)!r} is not an EchoMimic checkpoint (no emo_config "
                              f"metadata of format {EMO_FORMAT}); {HINT}")
    configs = parse_config_json(metadata["emo_config"], what, HINT)
    if not is_echomimic_config(configs):
        raise CheckpointError(f"{what} is not of the echomimic family; {HINT}")
    check_config_values(configs, what, HINT)
    return configs


def _meta_models(configs: dict, what: str):
    from ..models.echomimic_models import EchoMimicModels

    holder = []

    def build():
        holder.append(EchoMimicModels.from_configs(configs))
        return holder[-1]

    meta_element_count(build, what, HINT, kind="EchoMimic model")
    return holder[0]


def load_echomimic_checkpoint(path: str | os.PathLike, device="cpu",
                              dtype: torch.dtype = torch.float32):
    """Rebuild ``EchoMimicModels`` (eval, on ``device`` in ``dtype``); ``CheckpointError`` and
    nothing loaded for a bad file."""
    path = resolve_checkpoint_path(path)
    configs = read_echomimic_configs(path)
    meta = _meta_models(configs, f"EchoMimic checkpoint {str(path)!r}: emo_config")
    shapes, dtypes = _header(path)
    expected = meta.state_dict()
    require_match(compare_state_dicts(expected, shapes), f"EchoMimic checkpoint {str(path)!r}",
                  "the file and its emo_config metadata disagree (edited or damaged file); "
                  + HINT)
    check_float_dtypes(expected, dtypes, f"EchoMimic checkpoint {str(path)!r}", HINT)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error types for damaged data
        raise CheckpointError(f"EchoMimic checkpoint {str(path)!r} could not be read ({error}); "
                              "it is truncated or corrupt: copy it again") from error
    _align(tensors)
    check_finite(tensors, f"EchoMimic checkpoint {str(path)!r}", HINT)
    meta.load_state_dict(tensors, strict=True, assign=True)
    _restore_buffers(meta)
    logger.info("loaded EchoMimic checkpoint %s (%s, %d tensors)", path,
                configs["sampling"].get("variant"), len(tensors))
    return meta.to(device=device, dtype=dtype).eval()


def _restore_buffers(models) -> None:
    """Non-persistent buffers built on the meta device (diffusers/transformers keep none that
    EchoMimic's parts need; refuse rather than run with meta tensors)."""
    left = [name for name, t in models.named_buffers() if t.is_meta]
    if left:
        raise CheckpointError(f"EchoMimic model buffers not in the file: {left[:3]}; {HINT}")
