"""Checks of a Hallo ``net.pth`` against its configs, each refusal naming the file at fault.

``convert-hallo`` reads four things that must agree: ``net.pth`` (the weights), the base UNet
``config.json`` (block widths, layers, cross-attention width), the unet kwargs (motion and audio
module settings) and the VAE folder. When they do not, the message names the one that is wrong
as far as the tensors can tell: widths that ``net.pth`` itself shows (its ``conv_in``, its
cross-attention keys, its block and layer counts) decide between ``net.pth`` and the UNet
config; motion- and audio-module tensors point at the kwargs. Pure functions over state dicts
(tensors or shapes) and the already-read configs in :class:`~.hallo_sources.HalloSources`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..errors import CheckpointError
from .conversion import KeyReport, _shape
from .hallo_sources import HalloSources, positive_ints

_FLOAT = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# net.pth tensors the configs are derived from: name -> number of dimensions.
_CONFIG_TENSORS = {
    "face_locator.conv_in.weight": 4, "face_locator.conv_out.weight": 4,
    "audioproj.proj1.weight": 2, "audioproj.norm.weight": 1, "audioproj.proj3.weight": 2,
    "imageproj.proj.weight": 2, "imageproj.norm.weight": 1,
}
_FACE_BLOCK = re.compile(r"^face_locator\.blocks\.(\d+)\.weight$")
_AUDIO_PROJ_IN = re.compile(r"^denoising_unet\..*\.audio_modules\.\d+\.proj_in\.weight$")
DOWNLOAD_AGAIN = ("the file is damaged or not Hallo's: download hallo/net.pth again (Hugging "
                  "Face fudan-generative-ai/hallo)")


def check_net_tensors(net: Mapping[str, torch.Tensor], path: str) -> None:
    """Every tensor floating point; the tensors the configs come from present and well-shaped
    (``(0,)`` or 1-D where Hallo has a matrix would otherwise crash the config reader)."""
    bad = [f"{k} ({v.dtype})".replace("torch.", "") for k, v in net.items()
           if v.dtype not in _FLOAT]
    if bad:
        raise CheckpointError(f"net.pth {path!r}: {len(bad)} tensors are not floating point "
                              f"(first: {', '.join(bad[:3])}); Hallo's weights are float16/32: "
                              f"{DOWNLOAD_AGAIN}")
    wanted = dict(_CONFIG_TENSORS)
    wanted.update({k: 4 for k in net if _FACE_BLOCK.match(k)})
    wanted.update({k: 4 for k in net if _AUDIO_PROJ_IN.match(k)})
    for key, ndim in wanted.items():
        if key not in net:
            raise CheckpointError(f"net.pth {path!r} has no {key}; {DOWNLOAD_AGAIN}")
        shape = _shape(net[key])
        if len(shape) != ndim or 0 in shape:
            raise CheckpointError(f"net.pth {path!r}: {key} has shape {list(shape)}, but Hallo "
                                  f"stores a {ndim}-D tensor with no empty dimension there; "
                                  f"{DOWNLOAD_AGAIN}")


def check_unet_config(sources: HalloSources) -> None:
    """The UNet config values the conversion uses are usable numbers and lists."""
    config, what = sources.unet_config, f"UNet config {str(sources.unet_config_path)!r}"
    hint = "use the stable-diffusion-v1-5/unet/config.json of Hallo's pretrained_models/"
    positive_ints(config, ("layers_per_block", "in_channels", "out_channels", "norm_num_groups",
                           "cross_attention_dim", "sample_size"), what, hint)
    widths = config.get("block_out_channels")
    if not isinstance(widths, list) or not widths or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise CheckpointError(f"{what}: block_out_channels = {widths!r} must be a list of "
                              f"positive whole numbers; {hint}")


def net_unet_facts(net: Mapping) -> dict[str, int]:
    """What ``net.pth``'s own denoiser shows: first width, cross-attention width, block and
    layer counts (missing keys are left out)."""
    facts: dict[str, int] = {}
    if "denoising_unet.conv_in.weight" in net:
        facts["block_out_channels[0]"] = _shape(net["denoising_unet.conv_in.weight"])[0]
    for key, value in net.items():
        if key.startswith("denoising_unet.") and key.endswith(".attn2.to_k.weight"):
            facts["cross_attention_dim"] = _shape(value)[-1]
            break
    downs = {m.group(1) for k in net for m in [re.match(r"denoising_unet\.down_blocks\.(\d+)\.", k)]
             if m}
    if downs:
        facts["len(block_out_channels)"] = len(downs)
    resnets = {m.group(1) for k in net
               for m in [re.match(r"denoising_unet\.down_blocks\.0\.resnets\.(\d+)\.", k)] if m}
    if resnets:
        facts["layers_per_block"] = len(resnets)
    return facts


def unet_config_disagreements(net: Mapping, config: Mapping) -> list[str]:
    """``["cross_attention_dim = 768 (net.pth has 32)", ...]``: config values net.pth refutes."""
    widths = list(config.get("block_out_channels") or [])
    said = {"block_out_channels[0]": widths[0] if widths else None,
            "cross_attention_dim": config.get("cross_attention_dim"),
            "len(block_out_channels)": len(widths),
            "layers_per_block": config.get("layers_per_block")}
    return [f"{name} = {said[name]} (net.pth has {value})"
            for name, value in net_unet_facts(net).items() if said[name] != value]


def check_wiring(net: Mapping, sources: HalloSources) -> None:
    """Widths one input gives and another consumes, before any model is built."""
    kwargs, config = sources.unet_kwargs, sources.unet_config
    tokens = _shape(net["audioproj.norm.weight"])[0]
    audio_dim = kwargs.get("audio_attention_dim", 768)
    if audio_dim != tokens:
        raise CheckpointError(
            f"{sources.kwargs_label}: audio_attention_dim = {audio_dim}, but net.pth's audio "
            f"projection makes {tokens}-wide audio tokens (audioproj.norm.weight): pass "
            "--unet-kwargs with the unet_additional_kwargs this net.pth was trained with")
    heads = kwargs.get("motion_module_kwargs", {}).get("num_attention_heads", 8)
    uneven = [c for c in config["block_out_channels"] if c % heads]
    if uneven:
        raise CheckpointError(
            f"{sources.kwargs_label}: motion_module_kwargs.num_attention_heads = {heads} does not "
            f"divide the block widths {uneven} of the UNet; pass --unet-kwargs with the "
            "unet_additional_kwargs this net.pth was trained with")
    _check_wav2vec(net, sources)
    disagree = unet_config_disagreements(net, config)
    if disagree:
        raise CheckpointError(
            f"UNet config {str(sources.unet_config_path)!r} does not fit net.pth "
            f"{str(sources.net_path)!r}: {'; '.join(disagree)}; use the "
            "stable-diffusion-v1-5/unet/config.json this net.pth was trained on")


def _check_wav2vec(net: Mapping, sources: HalloSources) -> None:
    """The audio projection's input = window x wav2vec layers x hidden size."""
    config = sources.wav2vec_config or {}
    layers, hidden = config.get("num_hidden_layers", 12), config.get("hidden_size", 768)
    flat = _shape(net["audioproj.proj1.weight"])[1]
    if flat % (layers * hidden):
        where = (f"wav2vec config {str(sources.wav2vec_config_path)!r}"
                 if sources.wav2vec_config_path else "wav2vec-base-960h (no wav2vec config found)")
        raise CheckpointError(
            f"{where}: {layers} layers x hidden size {hidden} do not fit net.pth's audio "
            f"projection (audioproj.proj1 takes {flat} inputs); use the wav2vec2-base-960h "
            "config.json that comes with Hallo's pretrained_models/")


def blame(report: KeyReport, net: Mapping, sources: HalloSources) -> tuple[str, str]:
    """``(what, hint)`` for a strict-check failure of the net.pth tensors."""
    names = [*report.missing, *report.unexpected, *(m[0] for m in report.mismatched)]
    if names and all(".motion_modules." in n or ".audio_modules." in n for n in names):
        return (f"net.pth {str(sources.net_path)!r} with {sources.kwargs_label}",
                "the unet kwargs do not fit this net.pth's motion/audio modules: pass "
                "--unet-kwargs with the unet_additional_kwargs it was trained with")
    disagree = unet_config_disagreements(net, sources.unet_config)
    if disagree:
        return (f"net.pth {str(sources.net_path)!r} with UNet config "
                f"{str(sources.unet_config_path)!r}",
                f"the UNet config does not fit it ({'; '.join(disagree)}): use the "
                "stable-diffusion-v1-5/unet/config.json this net.pth was trained on")
    return f"net.pth {str(sources.net_path)!r}", DOWNLOAD_AGAIN


def vae_hint(sources: HalloSources) -> str:
    return (f"the VAE folder {str(sources.vae_folder)!r} does not hold stabilityai's "
            "sd-vae-ft-mse (config.json and weights must belong together): download it again, "
            "or remove the folder to convert without a VAE")
