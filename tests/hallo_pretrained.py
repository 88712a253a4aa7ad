"""Stand-ins of Hallo's ``pretrained_models/`` for converter tests (test_fuzz_convert_hallo.py,
test_hallo_real_downloads.py): the fixture folder (``$EMO_HALLO_FIXTURE``) as symlinks, so a
test rewrites only the file it changes, and stabilityai's legacy VAE attention names."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tests.hallo_media import FIXTURE

PRETRAINED = FIXTURE / "pretrained_models"
KWARGS = FIXTURE / "hallo_unet_kwargs.json"
NET = "hallo/net.pth"
HALLO2_NET = "hallo2/net.pth"
UNET_CONFIG = "stable-diffusion-v1-5/unet/config.json"
WAV2VEC_CONFIG = "wav2vec/wav2vec2-base-960h/config.json"
VAE = "sd-vae-ft-mse"
VAE_WEIGHTS = f"{VAE}/diffusion_pytorch_model.safetensors"
# diffusers >= 0.14 name -> the pre-0.14 name stabilityai's sd-vae-ft-mse still has.
LEGACY = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}


def symlink_layout(root: Path) -> Path:
    """The fixture's pretrained_models/ at ``root``, each file a symlink (nothing large copied)."""
    for source in PRETRAINED.rglob("*"):
        target = root / source.relative_to(PRETRAINED)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
    return root


def replace(path: Path) -> Path:
    """``path`` with its symlink removed, ready to be written as a real file."""
    path.unlink(missing_ok=True)
    return path


def write(path: Path, data: bytes | str) -> None:
    replace(path).write_bytes(data.encode() if isinstance(data, str) else data)


def legacy_names(state: Mapping) -> dict:
    """``state`` with the VAE mid-block attentions under stabilityai's legacy names."""
    legacy = {}
    for key, value in state.items():
        if ".mid_block.attentions." in key:
            for new, old in LEGACY.items():
                key = key.replace(new, old)
        legacy[key] = value
    return legacy
