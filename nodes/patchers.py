"""The EMO networks as ComfyUI ``ModelPatcher``s, so ComfyUI's memory management owns them.

Four patchers, one per thing a node loads on its own:

* ``backbone``: the Backbone UNet with everything that conditions it per frame (face locator,
  audio projection, speed encoder, image projection of Hallo checkpoints) and the
  cross-attention ``context`` parameter: every child of ``EMOModels`` except the two below;
* ``reference_net``: the ReferenceNet (only the Sampler needs it, with the Backbone);
* ``vae``: the checkpoint's VAE (Encode Reference, the Sampler's decode, Frames to Video);
* ``wav2vec``: the audio encoder the family's front-end runs (Wav2Vec Audio Features only): the
  wav2vec2 model of the wav2vec2 input, or the encoder the checkpoint carries (EchoMimic's
  whisper-tiny, ``ModelFamily.audio_encoder``), then taken out of the Backbone's patcher.

Each patcher holds a small ``nn.Module`` (one class per part, so ComfyUI's log and its loaded
list name it) whose children are the very modules of ``EMOModels``: moving the holder moves the
modules the pipeline calls, no copy. ComfyUI sets its bookkeeping attributes (``device``,
``model_loaded_weight_memory`` ...) on the holder, never on diffusers / transformers models
(whose read-only ``device`` property would refuse them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import comfy_bridge as bridge

SEPARATE = ("reference_net", "vae")  # EMOModels children with a patcher of their own


class _Holder(nn.Module):
    """``parts`` as children (and ``params`` as parameters) of one module for one patcher."""

    def __init__(self, parts: dict[str, nn.Module], params: dict[str, nn.Parameter],
                 dtype: torch.dtype):
        super().__init__()
        for name, module in parts.items():
            self.add_module(name, module)
        for name, param in params.items():
            self.register_parameter(name, param)
        self._dtype = dtype

    def get_dtype(self) -> torch.dtype:  # what ModelPatcher.model_dtype() asks for
        return self._dtype

    def forward(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__} only holds modules for ComfyUI's memory "
                           "management; the EMO pipeline calls the modules themselves")


class ComfyEMOBackbone(_Holder):
    """Backbone + face locator + audio projection + speed encoder (+ image projection) + context."""


class ComfyEMOReferenceNet(_Holder):
    """ReferenceNet."""


class ComfyEMOVAE(_Holder):
    """The EMO checkpoint's SD1.5 VAE."""


class ComfyEMOWav2Vec2(_Holder):
    """wav2vec2 audio encoder."""


class ComfyEMOAudioEncoder(_Holder):
    """The audio encoder inside the checkpoint (EchoMimic: whisper-tiny's encoder)."""


@dataclass(frozen=True)
class EMOPatchers:
    """ComfyUI ``ModelPatcher``s of one Load EMO Models output (``vae`` None without a VAE)."""

    backbone: Any
    reference_net: Any
    wav2vec: Any
    vae: Any = None

    def all(self) -> list:
        return [p for p in (self.backbone, self.reference_net, self.wav2vec, self.vae)
                if p is not None]

    def for_modules(self, models, modules) -> list:
        """Patchers holding ``modules``: ``EMOModels`` itself means every network of the
        sampler (Backbone, ReferenceNet, VAE); any other module names the patcher holding it."""
        found = []
        for module in modules:
            wanted = ([self.backbone, self.reference_net, self.vae] if module is models
                      else [self._holding(module)])
            found.extend(p for p in wanted if p is not None and p not in found)
        return found

    def _holding(self, module: nn.Module):
        for patcher in self.all():
            if any(child is module for child in patcher.model.children()):
                return patcher
        raise ValueError(f"{type(module).__name__} is held by no EMO model patcher")


def build_patchers(models, audio_encoder, load_device: torch.device,
                   dtype: torch.dtype) -> EMOPatchers:
    """Wrap ``models`` (``EMOModels``, on the offload device) and ``audio_encoder`` (the wav2vec2
    model, or a child of ``models``: the encoder a checkpoint carries) in patchers that load
    onto ``load_device``; the weights are cast to ``dtype`` here, once."""
    inside = {name: m for name, m in models.named_children() if m is audio_encoder}
    rest = {name: m for name, m in models.named_children()
            if name not in SEPARATE and name not in inside}
    own = dict(models.named_parameters(recurse=False))
    audio = (ComfyEMOAudioEncoder(inside, {}, dtype) if inside
             else ComfyEMOWav2Vec2({"wav2vec": audio_encoder}, {}, dtype))
    holders = {
        "backbone": ComfyEMOBackbone(rest, own, dtype),
        "reference_net": ComfyEMOReferenceNet({"reference_net": models.reference_net}, {}, dtype),
        "wav2vec": audio,
    }
    if models.vae is not None:
        holders["vae"] = ComfyEMOVAE({"vae": models.vae}, {}, dtype)
    patchers = {}
    for name, holder in holders.items():
        # nn.Module.to, not diffusers' ModelMixin.to: the latter logs a "should be kept in
        # float32: []" warning on every dtype argument, even when no module needs fp32.
        nn.Module.to(holder, dtype=dtype)
        patchers[name] = bridge.make_patcher(holder, load_device)
    return EMOPatchers(**patchers)
