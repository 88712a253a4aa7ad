"""Load a Hugging Face wav2vec2 folder (e.g. facebook/wav2vec2-base-960h) as a ``Wav2Vec2Model``.

Only the model is needed: no tokenizer, processor or preprocessor config (normalisation is done in
``emo_core.audio``). Nothing is ever fetched: ``local_files_only=True`` and the Hub's offline flag
is held on while loading. Loading is strict: weights that leave model parameters uninitialised or
that do not fit the config raise ``CheckpointError`` instead of running a half-random model.
"""

from __future__ import annotations

import logging
import pickle
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError
from .validate import (
    check_config_values,
    check_finite,
    check_float_dtypes,
    meta_element_count,
    parse_config_json,
)

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# Parameters a pretrained wav2vec2 may lack without harm: SpecAugment's mask vector (training only).
OPTIONAL_KEYS = ("masked_spec_embed",)
# Bounds on config.json before anything is built: wav2vec2-large has 24 layers x 1024 (317 M
# weights); 20000 layers or hidden_size 1e9 would build for minutes and exhaust memory.
CONFIG_LIMITS = {"num_hidden_layers": 128, "hidden_size": 8192, "intermediate_size": 65536,
                 "num_attention_heads": 256, "num_feat_extract_layers": 32,
                 "num_conv_pos_embeddings": 1024, "num_conv_pos_embedding_groups": 256}
MAX_WAV2VEC_ELEMENTS = 2_000_000_000
_WHERE = ("Download facebook/wav2vec2-base-960h from huggingface.co (config.json and "
          "model.safetensors or pytorch_model.bin) into its own folder, e.g. "
          "ComfyUI/models/wav2vec2/wav2vec2-base-960h")


def load_wav2vec(folder: str | Path, device="cpu", dtype: torch.dtype = torch.float32,
                 checked: bool = False):
    """Folder with ``config.json`` + weights -> ``Wav2Vec2Model`` in eval mode, no gradients.

    ``checked=True``: :func:`check_wav2vec_folder` already passed for this folder."""
    from transformers import Wav2Vec2Model  # heavy import, only when a model is loaded

    folder = Path(folder)
    if not checked:
        check_wav2vec_folder(folder)
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
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, SafetensorError) as err:
        raise CheckpointError(
            f"wav2vec2 folder {folder} could not be loaded ({_first_line(err)}); the weights do "
            f"not match config.json or are corrupt. {_WHERE}") from err
    _check_loading_info(folder, info)
    check_finite(model.state_dict(), f"wav2vec2 folder {folder}", _WHERE)
    model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    logger.info("loaded wav2vec2 from %s: %d layers x %d", folder,
                model.config.num_hidden_layers, model.config.hidden_size)
    return model


def check_wav2vec_folder(folder: str | Path) -> dict:
    """Every check short of loading the weights (folder, config bounds, the size of the model it
    describes on the meta device, header dtypes); returns the config. For preflight checks."""
    folder = Path(folder)
    config = _check_folder(folder)
    _check_size(folder, config)
    return config


def _check_folder(folder: Path) -> dict:
    """Missing folder / config / weights, a config of another model type, or config values out
    of bounds -> CheckpointError. Returns the parsed config."""
    if not folder.is_dir():
        raise CheckpointError(f"wav2vec2 folder {folder} does not exist. {_WHERE}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"wav2vec2 folder {folder} has no config.json. {_WHERE}")
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"wav2vec2 config {config_path} is not readable JSON ({err}). {_WHERE}") from err
    config = parse_config_json(text, f"wav2vec2 config {config_path}", _WHERE)
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "wav2vec2":
        raise CheckpointError(
            f"wav2vec2 folder {folder} holds a {model_type!r} model (config.json model_type), "
            f"expected 'wav2vec2'. {_WHERE}")
    check_config_values(config, f"wav2vec2 config {config_path}", _WHERE)
    for key, limit in CONFIG_LIMITS.items():
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 1 <= value <= limit):
            raise CheckpointError(
                f"wav2vec2 config {config_path}: {key} = {value!r} must be a whole number in "
                f"1..{limit}; the config is damaged or not a wav2vec2 model. {_WHERE}")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise CheckpointError(
            f"wav2vec2 folder {folder} has no weights: expected one of {', '.join(WEIGHT_FILES)}. "
            f"{_WHERE}")
    return config


def _check_size(folder: Path, config: dict) -> None:
    """Build the configured model on the meta device (no memory): it must be of sane size, and
    no bigger than the weight file can hold (2 bytes per weight at least); safetensors headers
    must be readable with floating-point tensors."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    what = f"wav2vec2 config {folder / 'config.json'}"
    holder = []

    def build():
        holder.append(Wav2Vec2Model(Wav2Vec2Config(**config)))
        return holder[-1]

    count = meta_element_count(build, what, _WHERE)
    if count > MAX_WAV2VEC_ELEMENTS:
        raise CheckpointError(f"{what} describes a model of {count:,} weights (wav2vec2-large "
                              f"has 317 M); the config is damaged. {_WHERE}")
    # Pickles (pytorch_model.bin) are size-checked by transformers' weights_only load instead.
    single = [folder / "model.safetensors"] if (folder / "model.safetensors").is_file() else []
    if single and 2 * (count - config.get("hidden_size", 0)) > single[0].stat().st_size:
        raise CheckpointError(
            f"{what} describes a model of {count:,} weights but {single[0].name} holds only "
            f"{single[0].stat().st_size:,} bytes; the config and the weights do not belong "
            f"together, or the file is truncated. {_WHERE}")
    if single:
        try:
            with safe_open(str(single[0]), framework="pt") as handle:
                # Hub files of Wav2Vec2ForCTC prefix the encoder with "wav2vec2.".
                dtypes = {k.removeprefix("wav2vec2."): handle.get_slice(k).get_dtype()
                          for k in handle.keys()}  # noqa: SIM118
        except Exception as err:  # safetensors raises its own error types for damaged files
            raise CheckpointError(
                f"wav2vec2 weights {single[0]} could not be read ({_first_line(err)}); the file "
                f"is truncated or corrupt. {_WHERE}") from None
        check_float_dtypes(holder[0].state_dict(), dtypes, f"wav2vec2 weights {single[0]}",
                           _WHERE)


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
