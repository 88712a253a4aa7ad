"""Save and load the EMO checkpoint: one ``.safetensors`` file that rebuilds itself.

Layout: tensors prefixed by component (``reference_net.``, ``backbone.``, ``face_locator.``,
``audio_projection.``, ``speed_encoder.``, optional ``vae.``) plus the top-level ``context``;
metadata ``emo_config`` = JSON of ``EMOModels.component_configs()`` and ``emo_format`` = "1".
A folder holding ``emo.safetensors`` is accepted too. Loading is all-or-nothing: the model is
built from the metadata, every name and shape is checked against the file header, and only then
are tensors read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from diffusers.models.modeling_utils import no_init_weights
from safetensors import safe_open

from ..errors import CheckpointError
from .checkpoint_path import (  # noqa: F401  (re-exported)
    EMO_FORMAT,
    FOLDER_FILE,
    INIT_HINT,
    resolve_checkpoint_path,
)
from .conversion import (
    EMO_COMPONENTS,
    EMO_TOP_LEVEL,
    compare_state_dicts,
    require_match,
    split_emo_components,
)
from .safe_load import (
    metadata_json,
    read_safetensors_metadata,
    read_safetensors_shapes,
    save_safetensors_atomic,
)
from .streaming import iter_tensors
from .validate import (
    check_config_values,
    check_finite,
    check_float_dtypes,
    header_dtypes,
    meta_element_count,
    parse_config_json,
)

logger = logging.getLogger(__name__)

def save_emo_checkpoint(models: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write ``models`` (an ``EMOModels``) to ``path`` (``.safetensors``, or a folder).

    Tensors are stored as they are (dtype included); the write is atomic.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        path = path / FOLDER_FILE
    state_dict = models.state_dict()
    split_emo_components(state_dict)  # refuses tensors outside the documented layout
    metadata = {
        "emo_format": EMO_FORMAT,
        "emo_config": metadata_json(models.component_configs()),
    }
    return save_safetensors_atomic(state_dict, path, metadata)


def _what_is_it(shapes: dict) -> str:
    """A user-level guess at what a non-EMO .safetensors file is."""
    keys = list(shapes)
    if any(k.startswith("model.diffusion_model.") for k in keys) or "conv_in.weight" in shapes:
        return ("this looks like a plain Stable Diffusion checkpoint, not an EMO checkpoint; "
                "run `python -m emo_core init-checkpoint --sd15 THIS_FILE --motion-module "
                "mm_sd_v15_v2.ckpt --out emo.safetensors` first")
    if keys and all(k.split(".")[0] in (*EMO_COMPONENTS, *EMO_TOP_LEVEL) for k in keys):
        return ("it has EMO tensor names but no EMO metadata (emo_config); the file was "
                f"re-saved by another tool and lost it: {INIT_HINT}")
    if any(k.startswith(("down_blocks.", "mid_block.", "up_blocks.")) and ".motion_modules." in k
           for k in keys):
        return ("this looks like an AnimateDiff motion module; pass it to "
                f"`python -m emo_core init-checkpoint --motion-module`; {INIT_HINT}")
    return f"it has no EMO metadata (emo_config); {INIT_HINT}"


def read_emo_configs(path: Path) -> dict[str, dict]:
    """The ``emo_config`` metadata of an EMO checkpoint, checked; reads no tensor data."""
    metadata = read_safetensors_metadata(path)
    if "emo_config" not in metadata:
        raise CheckpointError(
            f"{str(path)!r} is not an EMO checkpoint: {_what_is_it(read_safetensors_shapes(path))}"
        )
    version = metadata.get("emo_format")
    if version != EMO_FORMAT:
        raise CheckpointError(
            f"EMO checkpoint {str(path)!r} has format {version!r}; this version of EMO Portrait "
            f"reads format {EMO_FORMAT!r}: update EMO Portrait or re-create the checkpoint"
        )
    configs = parse_config_json(metadata["emo_config"],
                                f"EMO checkpoint {str(path)!r}: emo_config metadata", INIT_HINT)
    if not isinstance(configs, dict) or not all(isinstance(v, dict) for v in configs.values()):
        raise CheckpointError(
            f"EMO checkpoint {str(path)!r}: emo_config must map component names to config "
            f"dictionaries, got {type(configs).__name__}; {INIT_HINT}"
        )
    check_config_values(configs, f"EMO checkpoint {str(path)!r}: emo_config", INIT_HINT)
    return configs


def _header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """``({name: shape}, {name: dtype})`` from the file header; reads no tensor data."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            dtypes = header_dtypes(handle)
    except Exception as error:  # safetensors raises its own error types for damaged headers
        raise CheckpointError(
            f"EMO checkpoint {str(path)!r} could not be read ({error}); it is truncated or "
            "corrupt: copy it again") from None
    return read_safetensors_shapes(path), dtypes


def check_emo_checkpoint(path: str | os.PathLike) -> dict[str, dict]:
    """Everything that can be checked without allocating the model: file, metadata, config
    bounds, the size of the model the config describes (built on the meta device), and the
    names, shapes and dtypes in the header. Returns the component configs."""
    path = resolve_checkpoint_path(path)
    configs = read_emo_configs(path)
    what = f"EMO checkpoint {str(path)!r}: emo_config"
    meta = _meta_models(configs, what)
    shapes, dtypes = _header(path)
    expected = meta.state_dict()
    require_match(
        compare_state_dicts(expected, shapes), f"EMO checkpoint {str(path)!r}",
        "the file and its emo_config metadata disagree (edited or damaged file); " + INIT_HINT)
    check_float_dtypes(expected, dtypes, f"EMO checkpoint {str(path)!r}", INIT_HINT)
    return configs


def _models_class(configs: dict):
    """The container the checkpoint's family builds (``models_class`` on the family; EMO's
    ``EMOModels`` by default)."""
    from ..families import family_class, family_name
    from ..models.emo_models import EMOModels  # models import diffusers blocks: load lazily

    factory = getattr(family_class(family_name(configs)), "models_class", None)
    return factory() if factory is not None else EMOModels


def _meta_models(configs: dict, what: str):
    models_class = _models_class(configs)
    holder = []

    def build():
        holder.append(models_class.from_configs(configs))
        return holder[-1]

    meta_element_count(build, what, INIT_HINT, kind="EMO model")
    return holder[0]


def _build(configs: dict, path: Path):
    models_class = _models_class(configs)

    try:
        # Random init skipped: the strict load below assigns every persistent tensor, and untouched
        # torch.empty pages cost no real memory. (Not the meta device: non-persistent buffers,
        # e.g. speed bucket centres, are computed in __init__ and are not in the file.)
        with no_init_weights():
            return models_class.from_configs(configs)
    except (TypeError, ValueError, KeyError, RuntimeError, ZeroDivisionError) as error:
        raise CheckpointError(
            f"EMO checkpoint {str(path)!r}: emo_config does not describe a valid EMO model "
            f"({type(error).__name__}: {error}); {INIT_HINT}"
        ) from error


def _release_persistent(models):
    """Every tensor the file provides (parameters, persistent buffers) moved to the meta device
    before the file is read: the pages the build touched (~70 MB at Hallo's full size) are freed
    instead of sitting beside the loaded model until the final assign. Non-persistent buffers (computed, not stored) stay real. Shared
    parameters stay shared."""
    moved: dict[int, torch.Tensor] = {}
    for module in models.modules():
        for name, param in module._parameters.items():
            if param is not None:
                if id(param) not in moved:
                    moved[id(param)] = torch.nn.Parameter(param.to("meta"),
                                                          requires_grad=param.requires_grad)
                module._parameters[name] = moved[id(param)]
        for name, buffer in module._buffers.items():
            if buffer is not None and name not in module._non_persistent_buffers_set:
                module._buffers[name] = buffer.to("meta")
    return models


def load_emo_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
    checked: dict[str, dict] | None = None,
):
    """Rebuild ``EMOModels`` from an EMO checkpoint (file or folder); eval mode on ``device``.

    Raises :class:`CheckpointError` (and loads nothing) for a missing, truncated or non-EMO file,
    bad metadata, or tensors that do not match the model the metadata describes. ``checked``:
    the configs :func:`check_emo_checkpoint` already returned for this file (skips a second
    meta-device build).
    """
    path = resolve_checkpoint_path(path)
    configs = checked if checked is not None else check_emo_checkpoint(path)
    models = _release_persistent(_build(configs, path))
    tensors = {}
    try:
        # One tensor at a time: read, checked, cast and moved before the next is read, so CPU
        # memory holds the model in its run dtype plus one tensor (on a GPU: one tensor).
        # Floating tensors arrive in ``dtype`` (converted while read, checked as stored).
        what = f"EMO checkpoint {str(path)!r}"
        for name, tensor in iter_tensors(
                path, dtype=dtype, check=lambda key, values: check_finite({key: values}, what,
                                                                          INIT_HINT)):
            tensors[name] = tensor.to(device)
    except CheckpointError:  # the NaN check's refusal: its own advice, not "copy it again"
        raise
    except (OSError, ValueError, KeyError) as error:  # damaged header or data
        raise CheckpointError(
            f"EMO checkpoint {str(path)!r} could not be read ({error}); it is truncated or "
            "corrupt: copy it again"
        ) from error
    models.load_state_dict(tensors, strict=True, assign=True)
    logger.info("loaded EMO checkpoint %s (%d tensors)", path, len(tensors))
    del tensors
    return models.to(device=device, dtype=dtype).eval()
