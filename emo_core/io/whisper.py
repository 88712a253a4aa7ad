"""Whisper audio encoder: openai-format checkpoints -> the pack's format (transformers names).

openai-whisper checkpoints (EchoMimic's ``audio_processor/whisper_tiny.pt``) are
``{"dims": {...}, "model_state_dict": {...}}``. The pack keeps only the encoder, as a
transformers ``WhisperEncoder`` (composed, not copied), in safetensors with these names:

| openai | pack (``WhisperEncoder``) |
|---|---|
| ``encoder.conv1``, ``encoder.conv2`` | ``conv1``, ``conv2`` |
| ``encoder.positional_embedding`` (1500, D) | ``embed_positions.weight`` (the stored, fp16-rounded sinusoid runs) |
| ``encoder.blocks.i.attn.{query,key,value,out}`` | ``layers.i.self_attn.{q,k,v,out}_proj`` |
| ``encoder.blocks.i.attn_ln`` / ``mlp_ln`` | ``layers.i.self_attn_layer_norm`` / ``final_layer_norm`` |
| ``encoder.blocks.i.mlp.0`` / ``mlp.2`` | ``layers.i.fc1`` / ``fc2`` |

Dropped by rule (and only these): ``decoder.*`` (EchoMimic never decodes text) and
``encoder.ln_post`` (EchoMimic reads every block's output, never the final LayerNorm); the
encoder's ``layer_norm`` is an identity here. openai scales queries and keys by
``d_head ** -0.25`` each, transformers the queries by ``d_head ** -0.5``: the same product.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError

# What EchoMimic's whisper never runs: dropped by the converter, by name.
UNUSED_PREFIXES = ("decoder.", "encoder.ln_post.")
_DIM_KEYS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")
_BLOCK_NAMES = {
    "attn.query": "self_attn.q_proj", "attn.key": "self_attn.k_proj",
    "attn.value": "self_attn.v_proj", "attn.out": "self_attn.out_proj",
    "attn_ln": "self_attn_layer_norm", "mlp_ln": "final_layer_norm",
    "mlp.0": "fc1", "mlp.2": "fc2",
}
HINT = ("pass EchoMimic's pretrained_weights/audio_processor/whisper_tiny.pt (openai-whisper "
        "format: a dict with 'dims' and 'model_state_dict')")


def encoder_config(dims: Mapping) -> dict:
    """openai ``dims`` -> the pack's whisper config (a ``WhisperConfig`` encoder subset)."""
    missing = [k for k in _DIM_KEYS if not isinstance(dims.get(k), int) or dims[k] <= 0]
    if missing:
        raise CheckpointError(f"whisper dims lack positive integers for {missing}; {HINT}")
    state, heads = dims["n_audio_state"], dims["n_audio_head"]
    if state % heads:
        raise CheckpointError(f"whisper n_audio_state {state} is not divisible by n_audio_head "
                              f"{heads}; {HINT}")
    return {"num_mel_bins": dims["n_mels"], "max_source_positions": dims["n_audio_ctx"],
            "d_model": state, "encoder_attention_heads": heads,
            "encoder_layers": dims["n_audio_layer"], "encoder_ffn_dim": 4 * state}


def build_encoder(config: Mapping) -> nn.Module:
    """A transformers ``WhisperEncoder`` for ``config`` (fp32, eval, ``layer_norm`` identity)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    hf = WhisperConfig(**dict(config), activation_function="gelu", dropout=0.0,
                       attention_dropout=0.0, activation_dropout=0.0, encoder_layerdrop=0.0)
    hf._attn_implementation = "sdpa"
    encoder = WhisperEncoder(hf)
    encoder.layer_norm = nn.Identity()
    return encoder.eval().requires_grad_(False)


def openai_to_pack(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, list[str]]:
    """openai whisper tensors -> (``{pack name: tensor}``, dropped names). Every tensor is either
    renamed once or dropped by ``UNUSED_PREFIXES``; anything else is refused."""
    out: dict[str, torch.Tensor] = {}
    dropped, unknown = [], []
    for key, value in state_dict.items():
        if key.startswith(UNUSED_PREFIXES):
            dropped.append(key)
            continue
        name = _pack_name(key)
        if name is None:
            unknown.append(key)
        else:
            out[name] = value
    if unknown:
        raise CheckpointError(f"whisper checkpoint has tensors this converter does not know: "
                              f"{unknown[:5]} ({len(unknown)}); {HINT}")
    return out, dropped


def _pack_name(key: str) -> str | None:
    fixed = {"encoder.positional_embedding": "embed_positions.weight"}
    if key in fixed:
        return fixed[key]
    for conv in ("conv1", "conv2"):
        if key.startswith(f"encoder.{conv}."):
            return key[len("encoder."):]
    parts = key.split(".")
    if len(parts) < 5 or parts[:2] != ["encoder", "blocks"] or not parts[2].isdigit():
        return None
    inner, param = ".".join(parts[3:-1]), parts[-1]
    if inner not in _BLOCK_NAMES:
        return None
    return f"layers.{parts[2]}.{_BLOCK_NAMES[inner]}.{param}"


def read_openai_whisper(path: str | Path) -> tuple[dict, dict[str, torch.Tensor], list[str]]:
    """``whisper_tiny.pt`` (``torch.load(weights_only=True)``) -> (pack config, pack tensors,
    dropped names); checked by name and shape against the encoder the dims describe."""
    from .safe_load import _check_file, _load_pickle

    path = Path(path)
    _check_file(path)
    raw = _load_pickle(path)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("dims"), Mapping) \
            or not isinstance(raw.get("model_state_dict"), Mapping):
        raise CheckpointError(f"{str(path)!r} is not an openai-whisper checkpoint; {HINT}")
    config = encoder_config(raw["dims"])
    tensors = {k: v for k, v in raw["model_state_dict"].items() if isinstance(v, torch.Tensor)}
    converted, dropped = openai_to_pack(tensors)
    check_encoder_tensors(config, converted, str(path))
    return config, converted, dropped


def check_encoder_tensors(config: Mapping, tensors: Mapping, source: str) -> None:
    """Strict name/shape check against the encoder ``config`` builds (on the meta device)."""
    from .conversion import compare_state_dicts, require_match

    with torch.device("meta"):
        expected = build_encoder(config).state_dict()
    require_match(compare_state_dicts(expected, tensors), f"whisper encoder {source!r}", HINT)


def load_encoder(config: Mapping, tensors: Mapping[str, torch.Tensor], device=None,
                 dtype=torch.float32) -> nn.Module:
    """The encoder with ``tensors`` loaded strictly, on ``device`` in ``dtype``."""
    with torch.device("meta"):
        encoder = build_encoder(config)
    encoder.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=True,
                            assign=True)
    return encoder.to(device or "cpu")


def run_layers(encoder: nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """``mel: (n, n_mels, 2 * n_audio_ctx)`` -> ``(n, n_audio_ctx, 1 + layers, D)``: the input
    embedding (convs + positions) and the output of every block (no final LayerNorm), as
    openai-whisper's ``encoder(x, include_embeddings=True)`` stacks them."""
    conv_in = encoder.conv1.weight
    hidden = nn.functional.gelu(encoder.conv1(mel.to(conv_in.dtype)))
    hidden = nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
    hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
    outputs = [hidden]
    extra = _layer_extra_args(encoder.layers[0]) if len(encoder.layers) else {}
    for layer in encoder.layers:
        out = layer(hidden, None, **extra)
        hidden = out[0] if isinstance(out, tuple) else out
        outputs.append(hidden)
    return torch.stack(outputs, dim=2)


def _layer_extra_args(layer: nn.Module) -> dict:
    """transformers 4.x layers take ``layer_head_mask`` positionally-required; 5.x do not."""
    params = inspect.signature(layer.forward).parameters
    return {"layer_head_mask": None} if "layer_head_mask" in params else {}
