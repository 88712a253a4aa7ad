"""A tiny random weight bundle so the whole package runs without downloads.

``DIR/emo.safetensors`` is the ``tiny`` preset EMO checkpoint (VAE inside) and ``DIR/wav2vec2/``
a tiny Hugging Face wav2vec2 folder (model + feature-extractor config). The weights are random:
the videos they produce are noise. They exist to exercise every code path (tests, the `demo`
command, a first run in ComfyUI).

EMO zero-initialises the output of every new branch (audio, temporal, speed, face locator,
reference cross-attention) so a fresh model behaves like its UNet. For the demo that would hide
whole branches: a bug there could not change the output. So every parameter that is exactly zero
after construction is re-drawn from N(0, DEMO_STD^2), seeded, which makes every branch contribute.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import EMOInputError
from .emo_checkpoint import FOLDER_FILE, save_emo_checkpoint
from .safe_load import follow_umask

logger = logging.getLogger(__name__)

WAV2VEC_FOLDER = "wav2vec2"
# Small enough to keep activations bounded through the tiny UNet, large enough to matter.
DEMO_STD = 0.02


def randomize_zero_parameters(model: torch.nn.Module, seed: int, std: float = DEMO_STD) -> int:
    """Re-draw every all-zero parameter from ``N(0, std^2)`` (seeded); returns how many."""
    generator = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for _, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
            if parameter.numel() and not parameter.any():
                noise = torch.randn(parameter.shape, generator=generator) * std
                parameter.copy_(noise.to(parameter.dtype))
                count += 1
    return count


def _write_wav2vec(folder: Path, seed: int) -> None:
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from ..models.presets import wav2vec2_config

    with torch.random.fork_rng(devices=[]):  # seed locally, leave the caller's RNG alone
        torch.manual_seed(seed)
        model = Wav2Vec2Model(wav2vec2_config("tiny")).eval()
    model.save_pretrained(folder, safe_serialization=True)
    # The feature extractor of facebook/wav2vec2-base-960h: 16 kHz mono, zero-mean unit-variance.
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
        return_attention_mask=False,
    ).save_pretrained(folder)


def _install(staging: Path, out_dir: Path) -> None:
    """Move the staged bundle into ``out_dir``; each entry is replaced with a rename."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    if not out_dir.is_dir():
        raise EMOInputError(
            f"demo weights output {str(out_dir)!r} exists and is not a folder; choose a folder path"
        )
    os.replace(staging / FOLDER_FILE, out_dir / FOLDER_FILE)
    target = out_dir / WAV2VEC_FOLDER
    old = staging / "old-wav2vec2"
    if target.exists():
        os.replace(target, old)
    os.replace(staging / WAV2VEC_FOLDER, target)
    shutil.rmtree(staging)


def write_demo_weights(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write ``out_dir/emo.safetensors`` and ``out_dir/wav2vec2/`` (same seed, same tensors).

    Everything is written into a temporary sibling folder first and renamed into place, so an
    interrupted run never leaves a half-written bundle. Existing demo files are replaced; other
    files in ``out_dir`` are left alone. Returns ``out_dir``.
    """
    from ..models.presets import build_emo_models

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    models = build_emo_models("tiny", seed=seed, with_vae=True)
    changed = randomize_zero_parameters(models, seed + 1)
    logger.info("demo weights: re-drew %d zero-initialised parameters", changed)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_emo_checkpoint(models, staging / FOLDER_FILE)
        _write_wav2vec(staging / WAV2VEC_FOLDER, seed)
        follow_umask(staging)  # mkdtemp (0700, may become out_dir) and safetensors files (0600)
        _install(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("demo weights written to %s", out_dir)
    return out_dir
