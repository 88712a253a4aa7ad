"""EMOModels: every EMO component plus the (text-free) cross-attention context and optional VAE."""

from __future__ import annotations

import copy
import logging

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from torch import nn

from .audio_projection import AudioProjection
from .backbone import EMOBackbone
from .face_locator import FaceLocator
from .reference_net import ReferenceNet
from .speed_encoder import SpeedEncoder

logger = logging.getLogger(__name__)

COMPONENTS = {
    "reference_net": ReferenceNet,
    "backbone": EMOBackbone,
    "face_locator": FaceLocator,
    "audio_projection": AudioProjection,
    "speed_encoder": SpeedEncoder,
}


def _plain_config(model) -> dict:
    """A diffusers model's constructor kwargs as a JSON-ready dict (no ``_`` bookkeeping keys)."""
    return {k: copy.deepcopy(v) for k, v in dict(model.config).items() if not k.startswith("_")}


class EMOModels(nn.Module):
    """Container: ``reference_net, backbone, face_locator, audio_projection, speed_encoder, vae``.

    ``context: (1, L, D)`` is a parameter used as the UNets' cross-attention input (EMO has no
    text); it starts at zero and can be trained.
    """

    def __init__(self, reference_net: ReferenceNet, backbone: EMOBackbone, face_locator: FaceLocator,
                 audio_projection: AudioProjection, speed_encoder: SpeedEncoder,
                 vae: AutoencoderKL | None = None, context_tokens: int = 1):
        super().__init__()
        self.reference_net = reference_net
        self.backbone = backbone
        self.face_locator = face_locator
        self.audio_projection = audio_projection
        self.speed_encoder = speed_encoder
        self.vae = vae
        self._check_wiring(context_tokens)
        dim = backbone.unet.config.cross_attention_dim
        self.context = nn.Parameter(torch.zeros(1, context_tokens, dim))

    def _check_wiring(self, context_tokens: int) -> None:
        """Component configs must agree where one's output is another's input."""
        bb = self.backbone.config
        pairs = [
            ("audio_projection.output_dim", self.audio_projection.config.output_dim,
             "backbone.audio_token_dim", bb.audio_token_dim),
            ("speed_encoder.output_dim", self.speed_encoder.config.output_dim,
             "backbone.speed_token_dim", bb.speed_token_dim),
            ("face_locator.embedding_channels", self.face_locator.config.embedding_channels,
             "backbone block_out_channels[0]", self.backbone.unet.config.block_out_channels[0]),
            ("reference_net cross_attention_dim",
             self.reference_net.unet.config.cross_attention_dim,
             "backbone cross_attention_dim", self.backbone.unet.config.cross_attention_dim),
        ]
        for name_a, a, name_b, b in pairs:
            if a != b:
                raise ValueError(f"{name_a} = {a} does not match {name_b} = {b}")
        if context_tokens < 1:
            raise ValueError(f"context tokens must be >= 1, got {context_tokens}")

    def component_configs(self) -> dict[str, dict]:
        """``{component: constructor kwargs}`` + ``context``; ``vae`` only when present."""
        configs = {name: _plain_config(getattr(self, name)) for name in COMPONENTS}
        configs["context"] = {"tokens": int(self.context.shape[1]), "dim": int(self.context.shape[2])}
        if self.vae is not None:
            configs["vae"] = _plain_config(self.vae)
        return configs

    @classmethod
    def from_configs(cls, configs: dict[str, dict]) -> EMOModels:
        """Build (random init) from ``component_configs()`` / ``emo_component_configs()``."""
        missing = [name for name in COMPONENTS if name not in configs]
        if missing:
            raise ValueError(f"configs lack components {missing}; expected {list(COMPONENTS)}")
        parts = {name: kind.from_config(configs[name]) for name, kind in COMPONENTS.items()}
        vae = AutoencoderKL.from_config(configs["vae"]) if configs.get("vae") else None
        context = configs.get("context", {})
        dim = parts["backbone"].unet.config.cross_attention_dim
        if context.get("dim", dim) != dim:
            raise ValueError(f"context dim {context['dim']} != cross_attention_dim {dim}")
        return cls(**parts, vae=vae, context_tokens=int(context.get("tokens", 1)))
