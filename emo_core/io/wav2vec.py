"""Load a Hugging Face wav2vec2 folder (e.g. facebook/wav2vec2-base-960h) as a ``Wav2Vec2Model``.

Only the model is needed: no tokenizer, processor or preprocessor config (normalisation is done in
``emo_core.audio``). Nothing is ever fetched: ``local_files_only=True`` and the Hub's offline flag
is held on while loading. Loading is strict: weights that leave model parameters uninitialised or
that do not fit the config raise ``CheckpointError`` instead of running a half-random model.
"""

from __future__ import annotations

import json
import logging
import pickle
from contextlib import contextmanager
from pathlib import Path

import torch

from ..errors import CheckpointError

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# Parameters a pretrained wav2vec2 may lack without harm: SpecAugment's mask vector (training only).
OPTIONAL_KEYS = ("masked_spec_embed",)
_WHERE = ("Download facebook/wav2vec2-base-960h from huggingface.co (config.json and "
          "model.safetensors or pytorch_model.bin) into its own folder, e.g. "
          "ComfyUI/models/wav2vec2/wav2vec2-base-960h")


def load_wav2vec(folder: str | Path, device="cpu", dtype: torch.dtype = torch.float32):
    """Folder with ``config.json`` + weights -> ``Wav2Vec2Model`` in eval mode, no gradients."""
    from transformers import Wav2Vec2Model  # heavy import, only when a model is loaded

    folder = Path(folder)
    _check_folder(folder)
    try:
        with _hub_offline(), _quiet_transformers():
            # Mis-shaped weights are reported by _check_loading_info with their names.
            model, info = Wav2Vec2Model.from_pretrained(
                str(folder), local_files_only=True, output_loading_info=True,
                ignore_mismatched_sizes=True)
    except pickle.UnpicklingError as err:  # torch.load(weights_only=True) refused the file
        raise CheckpointError(
            f"wav2vec2 weights in {folder} are not a plain tensor file and were not loaded "
            f"(unsafe or corrupt pickle). Use model.safetensors instead. {_WHERE}") from err
    except (OSError, RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"wav2vec2 folder {folder} could not be loaded ({_first_line(err)}); the weights do "
            f"not match config.json or are corrupt. {_WHERE}") from err
    _check_loading_info(folder, info)
    model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    logger.info("loaded wav2vec2 from %s: %d layers x %d", folder,
                model.config.num_hidden_layers, model.config.hidden_size)
    return model


def _check_folder(folder: Path) -> None:
    """Missing folder / config / weights, or a config of another model type -> CheckpointError."""
    if not folder.is_dir():
        raise CheckpointError(f"wav2vec2 folder {folder} does not exist. {_WHERE}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"wav2vec2 folder {folder} has no config.json. {_WHERE}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"wav2vec2 config {config_path} is not readable JSON ({err}). {_WHERE}") from err
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "wav2vec2":
        raise CheckpointError(
            f"wav2vec2 folder {folder} holds a {model_type!r} model (config.json model_type), "
            f"expected 'wav2vec2'. {_WHERE}")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise CheckpointError(
            f"wav2vec2 folder {folder} has no weights: expected one of {', '.join(WEIGHT_FILES)}. "
            f"{_WHERE}")


def _check_loading_info(folder: Path, info: dict) -> None:
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith(OPTIONAL_KEYS))
    mismatched = sorted(_describe_mismatch(k) for k in info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise CheckpointError(
            f"wav2vec2 folder {folder} does not fit its config.json: {len(missing)} missing "
            f"weights {missing[:5]}, {len(mismatched)} mis-shaped {mismatched[:5]}. {_WHERE}")
    unexpected = info.get("unexpected_keys", ())
    if unexpected:  # e.g. the CTC head of wav2vec2-base-960h: not needed for features
        logger.debug("wav2vec2 %s: ignoring %d unused weights", folder, len(unexpected))


@contextmanager
def _quiet_transformers():
    """transformers logs a load report as a warning (e.g. the CTC head of wav2vec2-base-960h);
    this module checks the same facts strictly and reports them itself."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


@contextmanager
def _hub_offline():
    """Hold huggingface_hub's offline flag while loading (read at import: set the constant)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - transformers always brings huggingface_hub
        yield
        return
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def _describe_mismatch(entry) -> str:
    """transformers reports ``(key, file shape, model shape)``; older versions only the key."""
    if isinstance(entry, tuple) and len(entry) == 3:
        key, found, wanted = entry
        return f"{key} (file {tuple(found)}, config {tuple(wanted)})"
    return str(entry)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__
