"""EMOModels: every EMO component plus the (text-free) cross-attention context and optional VAE."""

from __future__ import annotations

import copy
import logging

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from torch import nn

from ..prediction import PREDICTION_TYPES
from .audio_projection import AudioProjection
from .backbone import EMOBackbone
from .face_locator import FaceLocator
from .image_projection import ImageProjection
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
# Present only in some checkpoints: Hallo-variant checkpoints have face-identity tokens and no
# speed layers (their config has no "speed_encoder" entry and speed_token_dim 0).
OPTIONAL_COMPONENTS = {"image_projection": ImageProjection}


def _speedless(configs: dict) -> bool:
    """A checkpoint without speed layers (Hallo variant): backbone speed_token_dim is 0."""
    return not configs.get("backbone", {}).get("speed_token_dim", 768)


def _plain_config(model) -> dict:
    """A diffusers model's constructor kwargs as a JSON-ready dict (no ``_`` bookkeeping keys)."""
    return {k: copy.deepcopy(v) for k, v in dict(model.config).items() if not k.startswith("_")}


class EMOModels(nn.Module):
    """Container: ``reference_net, backbone, face_locator, audio_projection, speed_encoder, vae``.

    ``context: (1, L, D)`` is a parameter used as the UNets' cross-attention input (EMO has no
    text); it starts at zero and can be trained. ``prediction_type`` ("epsilon" | "v_prediction")
    is what the Backbone predicts; it travels in the checkpoint so samplers need not be told.
    """

    def __init__(self, reference_net: ReferenceNet, backbone: EMOBackbone, face_locator: FaceLocator,
                 audio_projection: AudioProjection, speed_encoder: SpeedEncoder | None,
                 vae: AutoencoderKL | None = None, context_tokens: int = 1,
                 image_projection: ImageProjection | None = None):
        super().__init__()
        self.reference_net = reference_net
        self.backbone = backbone
        self.face_locator = face_locator
        self.audio_projection = audio_projection
        self.speed_encoder = speed_encoder
        self.vae = vae
        self.image_projection = image_projection
        self._check_wiring(context_tokens)
        dim = backbone.unet.config.cross_attention_dim
        self.context = nn.Parameter(torch.zeros(1, context_tokens, dim))
        self.prediction_type = "epsilon"
        # Other sampling defaults a checkpoint carries (Hallo variant: scheduler, guidance, clip
        # layout); EMO checkpoints have none.
        self.sampling: dict = {}

    def _check_wiring(self, context_tokens: int) -> None:
        """Component configs must agree where one's output is another's input."""
        bb = self.backbone.config
        pairs = [
            ("audio_projection.output_dim", self.audio_projection.config.output_dim,
             "backbone.audio_token_dim", bb.audio_token_dim),
            ("face_locator.embedding_channels", self.face_locator.config.embedding_channels,
             "backbone block_out_channels[0]", self.backbone.unet.config.block_out_channels[0]),
            ("reference_net cross_attention_dim",
             self.reference_net.unet.config.cross_attention_dim,
             "backbone cross_attention_dim", self.backbone.unet.config.cross_attention_dim),
        ]
        if self.speed_encoder is not None:
            pairs.append(("speed_encoder.output_dim", self.speed_encoder.config.output_dim,
                          "backbone.speed_token_dim", bb.speed_token_dim))
        if self.image_projection is not None:
            pairs.append(("image_projection.cross_attention_dim",
                          self.image_projection.config.cross_attention_dim,
                          "backbone cross_attention_dim",
                          self.backbone.unet.config.cross_attention_dim))
        for name_a, a, name_b, b in pairs:
            if a != b:
                raise ValueError(f"{name_a} = {a} does not match {name_b} = {b}")
        if context_tokens < 1:
            raise ValueError(f"context tokens must be >= 1, got {context_tokens}")

    def component_configs(self) -> dict[str, dict]:
        """``{component: constructor kwargs}`` + ``context`` + ``sampling``; ``vae`` only when
        present."""
        configs = {name: _plain_config(getattr(self, name))
                   for name in (*COMPONENTS, *OPTIONAL_COMPONENTS)
                   if getattr(self, name) is not None}
        configs["context"] = {"tokens": int(self.context.shape[1]), "dim": int(self.context.shape[2])}
        configs["sampling"] = {**self.sampling, "prediction_type": self.prediction_type}
        if self.vae is not None:
            configs["vae"] = _plain_config(self.vae)
        return configs

    @classmethod
    def from_configs(cls, configs: dict[str, dict]) -> EMOModels:
        """Build (random init) from ``component_configs()`` / ``emo_component_configs()``."""
        missing = [name for name in COMPONENTS if name not in configs
                   and not (name == "speed_encoder" and _speedless(configs))]
        if missing:
            raise ValueError(f"configs lack components {missing}; expected {list(COMPONENTS)}")
        kinds = {**COMPONENTS, **OPTIONAL_COMPONENTS}
        parts = {name: kinds[name].from_config(configs[name]) if configs.get(name) else None
                 for name in kinds}
        vae = AutoencoderKL.from_config(configs["vae"]) if configs.get("vae") else None
        context = configs.get("context", {})
        dim = parts["backbone"].unet.config.cross_attention_dim
        if context.get("dim", dim) != dim:
            raise ValueError(f"context dim {context['dim']} != cross_attention_dim {dim}")
        models = cls(**parts, vae=vae, context_tokens=int(context.get("tokens", 1)))
        return models._set_sampling(configs)

    @classmethod
    def from_unet2d(cls, unet, configs: dict[str, dict], vae: AutoencoderKL | None = None
                    ) -> EMOModels:
        """ReferenceNet and Backbone both copied from ONE ``UNet2DConditionModel``; the other
        parts random/zero from ``configs`` (``emo_component_configs()``; its ``unet`` entries
        are ignored). Sharing matters for training from scratch too: reference keys then live in
        the Backbone's query space from step 0 (see docs/TRAINING.md)."""
        extra = {k: v for k, v in configs["backbone"].items() if k != "unet"}
        reference_net = ReferenceNet.from_unet2d(unet)
        backbone = EMOBackbone.from_unet2d(unet, **extra)
        parts = {name: COMPONENTS[name].from_config(configs[name])
                 for name in ("face_locator", "audio_projection", "speed_encoder")}
        models = cls(reference_net, backbone, vae=vae,
                     context_tokens=int(configs["context"]["tokens"]), **parts)
        return models._set_sampling(configs)

    def _set_sampling(self, configs: dict) -> EMOModels:
        # Checkpoints written before the field existed were all epsilon models.
        prediction_type = configs.get("sampling", {}).get("prediction_type", "epsilon")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"sampling.prediction_type must be one of {PREDICTION_TYPES}, "
                             f"got {prediction_type!r}")
        self.prediction_type = prediction_type
        self.sampling = {k: v for k, v in configs.get("sampling", {}).items()
                         if k != "prediction_type"}
        return self
