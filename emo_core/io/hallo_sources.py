"""Read and check everything ``convert-hallo`` takes from Hallo's ``pretrained_models/``.

Every file is untrusted input: configs are bounded and type-checked (``validate``), ``net.pth``
is opened with ``torch.load(weights_only=True, mmap=True)`` (tensors stay in a memory map of the
file until written out), the VAE's legacy attention names are renamed. Each refusal names the
one file it is about: ``net.pth``, the UNet ``config.json``, the unet kwargs (``--unet-kwargs``
or Hallo's released defaults), the wav2vec ``config.json`` or the ``sd-vae-ft-mse/`` folder.

A family variant (Hallo2) adds its own field to :class:`HalloSources`; the readers stay shared.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointError, EMOInputError
from .pretrained_sources import find_file, read_config

NET_FILES = ("hallo/net.pth", "hallo2/net.pth")
HALLO2_NET = "hallo2/net.pth"
UNET_CONFIG = "stable-diffusion-v1-5/unet/config.json"
WAV2VEC_CONFIG = "wav2vec/wav2vec2-base-960h/config.json"
VAE_FOLDER = "sd-vae-ft-mse"
VAE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
HALLO_HINT = "pass Hallo's pretrained_models/ folder (Hugging Face fudan-generative-ai/hallo)"
HALLO2_HINT = ("pass Hallo2's pretrained_models/ folder (Hugging Face fudan-generative-ai/hallo2) "
               "or one with Hallo2's weights at hallo/net.pth")


@dataclass
class HalloSources:
    """What one conversion reads: paths (for messages) and checked contents."""

    root: Path
    net_path: Path
    unet_config_path: Path
    unet_config: dict
    unet_kwargs: dict
    kwargs_label: str  # how messages name the kwargs: the --unet-kwargs file or the defaults
    wav2vec_config: dict | None = None
    wav2vec_config_path: Path | None = None
    vae_folder: Path | None = None
    vae_config: dict | None = None
    vae_weights: Path | None = None
    extra: dict = field(default_factory=dict)  # room for a family variant's own settings

    def inputs(self) -> list[Path]:
        """Every file read (an output may be none of them)."""
        return [p for p in (self.net_path, self.unet_config_path, self.wav2vec_config_path,
                            self.vae_weights, self.vae_folder and self.vae_folder / "config.json")
                if p is not None]


def positive_ints(config: Mapping, keys, what: str, hint: str) -> None:
    """Each of ``keys`` present in ``config`` must be an int >= 1 (bools are not ints here)."""
    for key in keys:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise CheckpointError(f"{what}: {key} = {value!r} must be a whole number of at least "
                                  f"1; {hint}")


def read_unet_kwargs(path: Path | None, defaults: Mapping,
                     given: Mapping | None = None) -> tuple[dict, str]:
    """``(kwargs, label)``: ``given`` (a caller's dict), the ``--unet-kwargs`` file, checked,
    or a copy of ``defaults``."""
    if given is not None:
        return copy.deepcopy(given), "the unet kwargs given"
    if path is None:
        return copy.deepcopy(dict(defaults)), "Hallo's released unet kwargs (no --unet-kwargs given)"
    label = f"--unet-kwargs {str(path)!r}"
    hint = "pass Hallo's unet_additional_kwargs (configs/inference/default.yaml) as a JSON object"
    kwargs = read_config(Path(path), "--unet-kwargs", hint)
    return kwargs, label


def read_sources(root: Path, unet_kwargs: Path | None, defaults: Mapping,
                 given_kwargs: Mapping | None = None, hallo2: bool | None = None) -> HalloSources:
    """Find and check every config of a ``pretrained_models/`` folder (no tensor is read).
    ``hallo2``: True = Hallo2's weights (``hallo2/net.pth`` preferred), False = Hallo's, None =
    what the folder holds; recorded as ``extra["hallo2"]``."""
    root = Path(root)
    if not root.is_dir():
        raise EMOInputError(f"--pretrained-models {str(root)!r} is not a folder; {HALLO_HINT}")
    net_path = find_file(root, NET_FILES[::-1] if hallo2 else NET_FILES, "Hallo net.pth",
                         HALLO2_HINT if hallo2 else HALLO_HINT)
    unet_path = find_file(root, (UNET_CONFIG,), "SD1.5 unet/config.json", HALLO_HINT)
    unet_hint = ("use the stable-diffusion-v1-5/unet/config.json that comes with Hallo's "
                 "pretrained_models/")
    unet_config = read_config(unet_path, "UNet config", unet_hint)
    kwargs, label = read_unet_kwargs(unet_kwargs, defaults, given_kwargs)
    sources = HalloSources(root, net_path, unet_path, unet_config, kwargs, label)
    sources.extra["hallo2"] = bool(hallo2) if hallo2 is not None else net_path == root / HALLO2_NET
    w2v_path = root / WAV2VEC_CONFIG
    if w2v_path.is_file():
        hint = "use the config.json of facebook/wav2vec2-base-960h that Hallo was trained with"
        sources.wav2vec_config = read_config(w2v_path, "wav2vec config", hint)
        sources.wav2vec_config_path = w2v_path
        positive_ints(sources.wav2vec_config, ("hidden_size", "num_hidden_layers"),
                      f"wav2vec config {str(w2v_path)!r}", hint)
    _read_vae(sources)
    return sources


def _read_vae(sources: HalloSources) -> None:
    folder = sources.root / VAE_FOLDER
    if not folder.exists():
        return
    hint = ("use stabilityai/sd-vae-ft-mse as Hallo's pretrained_models/ has it (config.json "
            "and diffusion_pytorch_model.safetensors), or remove the folder to convert without "
            "a VAE")
    if not (folder / "config.json").is_file():
        raise EMOInputError(f"VAE folder {str(folder)!r} has no config.json; {hint}")
    sources.vae_folder = folder
    sources.vae_config = read_config(folder / "config.json", "VAE config", hint)
    sources.vae_weights = find_file(folder, VAE_WEIGHTS, "VAE weights", hint)


def refuse_output_among_inputs(out: Path, sources: HalloSources) -> None:
    """``--out`` may not be (a spelling or link of) any file the conversion reads."""
    if not out.exists():
        return
    for path in sources.inputs():
        try:
            same = out.samefile(path)
        except OSError:
            same = False
        if same:
            raise EMOInputError(f"--out {str(out)!r} is the input {str(path)!r}; writing it would "
                                "destroy the input: choose another --out")


def check_output_path(out: Path) -> None:
    """Refuse an ``--out`` that cannot be written, before anything is read."""
    if out.suffix.lower() != ".safetensors":
        raise EMOInputError(f"--out {str(out)!r} must be a .safetensors file name")
    if out.is_dir():
        raise EMOInputError(f"--out {str(out)!r} is a folder; pass a file name ending in "
                            f".safetensors (for example {str(out / 'hallo.safetensors')!r})")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise EMOInputError(f"--out {str(out)!r}: {str(parent)!r} is a file, not a folder; "
                            "choose an --out inside a folder")


def load_net(path: Path) -> dict[str, torch.Tensor]:
    """``net.pth`` as ``{name: tensor}`` backed by a memory map (nothing read yet)."""
    from .safe_load import load_state_dict

    return load_state_dict(path, mmap=True)
