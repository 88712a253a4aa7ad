"""Hallo's ``pretrained_models/`` -> one EMO checkpoint (Hallo variant), streamed.

Order: everything that needs no tensor data first (the ``--out`` path, every config, net.pth's
key layout, dtypes and config-defining shapes, the widths the configs and net.pth must share,
the model the configs describe built on the meta device, names and shapes of every tensor
against it), then one pass that writes each tensor, checking it is finite just before. net.pth
stays memory-mapped (``torch.load(mmap=True)``) and the output is written tensor by tensor
(:mod:`.streaming`), so peak memory is about the size of net.pth, not two or three times it.
A refusal at any point leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError
from .conversion import compare_state_dicts, rename_legacy_vae_attention, require_match
from .hallo import (
    HALLO_UNET_KWARGS,
    check_hallo_layout,
    check_unet_kwargs,
    hallo_configs,
    hallo_to_emo,
)
from .hallo_checks import (
    blame,
    check_net_tensors,
    check_unet_config,
    check_wiring,
    vae_hint,
)
from .hallo_sources import (
    HalloSources,
    check_output_path,
    load_net,
    read_sources,
    refuse_output_among_inputs,
)
from .validate import FLOAT_DTYPES, is_finite, meta_element_count


def convert_pretrained(pretrained: Path, out: Path, unet_kwargs_file: Path | None = None,
                       unet_kwargs: Mapping | None = None,
                       defaults: Mapping = HALLO_UNET_KWARGS, hallo2: bool | None = None) -> Path:
    """Convert and write atomically; returns the written path. ``hallo2``: see
    :func:`read_sources` (Hallo2's weights have Hallo's layout; only the sampling config differs)."""
    out = Path(out)
    check_output_path(out)
    sources = read_sources(Path(pretrained), unet_kwargs_file, defaults, unet_kwargs, hallo2)
    refuse_output_among_inputs(out, sources)
    net = load_net(sources.net_path)
    converted, origin, configs = plan(net, sources)
    if sources.extra["hallo2"]:  # same networks; Hallo2's inference settings (io/hallo2.py)
        from .hallo2 import hallo2_sampling

        configs["sampling"] = hallo2_sampling()
    return write(converted, origin, configs, out)


def plan(net: Mapping[str, torch.Tensor], sources: HalloSources
         ) -> tuple[dict[str, torch.Tensor], dict[str, str], dict]:
    """``(EMO-named tensors, {EMO name: file it comes from}, component configs)``; every name
    and shape checked against the model the configs build. Reads no tensor data."""
    net_label = str(sources.net_path)
    try:
        check_hallo_layout(net)
    except CheckpointError as error:  # name the file that was read
        raise CheckpointError(str(error).replace("net.pth", f"net.pth {net_label!r}", 1)
                              ) from None
    check_net_tensors(net, net_label)
    check_unet_config(sources)
    check_unet_kwargs(sources.unet_kwargs, sources.kwargs_label)
    check_wiring(net, sources)
    configs = hallo_configs(net, sources.unet_config, sources.unet_kwargs,
                            sources.wav2vec_config, sources.vae_config)
    model = _meta_model(configs, sources)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    converted = hallo_to_emo(net)
    origin = dict.fromkeys(converted, f"net.pth {net_label!r}")
    net_expected = {k: s for k, s in expected.items() if not k.startswith("vae.")
                    and k != "context"}
    report = compare_state_dicts(net_expected, converted)
    if not report.ok:
        what, hint = blame(report, net, sources)
        require_match(report, what, hint)
    if sources.vae_weights is not None:
        vae = _vae_tensors(sources, expected)
        converted.update(vae)
        origin.update(dict.fromkeys(vae, f"VAE weights {str(sources.vae_weights)!r}"))
    context = configs["context"]
    converted["context"] = torch.zeros(1, context["tokens"], context["dim"])
    origin["context"] = "context"
    return converted, origin, configs


def _meta_model(configs: dict, sources: HalloSources):
    from ..models.emo_models import EMOModels  # models import diffusers blocks: load lazily

    holder = []

    def build():
        holder.append(EMOModels.from_configs(configs))
        return holder[-1]

    what = (f"UNet config {str(sources.unet_config_path)!r} with {sources.kwargs_label}"
            + (f" and VAE config {str(sources.vae_folder / 'config.json')!r}"
               if sources.vae_folder else ""))
    meta_element_count(build, what, "use the configs of Hallo's pretrained_models/ and its "
                       "unet_additional_kwargs", kind="Hallo model")
    return holder[0]


def _vae_tensors(sources: HalloSources, expected: Mapping) -> dict[str, torch.Tensor]:
    """The VAE folder's tensors as ``vae.*``, legacy attention names renamed, checked."""
    from .safe_load import load_state_dict

    try:
        raw = load_state_dict(sources.vae_weights, mmap=True)
    except CheckpointError as error:
        raise CheckpointError(f"{error} (VAE folder {str(sources.vae_folder)!r})") from None
    vae = {f"vae.{k}": v for k, v in rename_legacy_vae_attention(raw).items()}
    vae_expected = {k: s for k, s in expected.items() if k.startswith("vae.")}
    require_match(compare_state_dicts(vae_expected, vae),
                  f"VAE weights {str(sources.vae_weights)!r}", vae_hint(sources))
    return vae


def write(converted: Mapping[str, torch.Tensor], origin: Mapping[str, str], configs: dict,
          out: Path) -> Path:
    """Stream the checked tensors to ``out`` (temp file + rename); a dtype that is not a
    float weight's or a NaN/inf value stops the write, naming the file it came from."""
    from .emo_checkpoint import EMO_FORMAT
    from .safe_load import metadata_json
    from .streaming import safetensors_dtype_name, save_streaming_atomic

    def check(name: str, tensor: torch.Tensor) -> None:
        if safetensors_dtype_name(tensor.dtype) not in FLOAT_DTYPES:
            raise CheckpointError(f"{origin[name]}: {name} has dtype {tensor.dtype}; weights "
                                  "must be float16/bfloat16/float32: download the file again")
        if not is_finite(tensor):
            raise CheckpointError(f"{origin[name]}: {name} contains NaN or infinite values; "
                                  "the file is damaged: download it again")

    metadata = {"emo_format": EMO_FORMAT, "emo_config": metadata_json(configs)}
    return save_streaming_atomic(converted, out, metadata, check)
