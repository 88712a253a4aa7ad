"""EchoMimicModels: EchoMimic v1's parts in one container (the family's ``EMOModels``).

Components: ``reference_net`` (``EchoReferenceNet``), ``backbone`` (``EchoBackbone``),
``face_locator`` (the pack's ``FaceLocator``, 1-channel mask), ``whisper`` (a transformers
``WhisperEncoder``, see ``io/whisper.py``) and the ``vae``. ``sampling`` holds EchoMimic's
sampling defaults for the checkpoint's variant (``"normal"`` or ``"acc"``).
"""

from __future__ import annotations

import copy

from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from torch import nn

from .echomimic import EchoBackbone, EchoReferenceNet
from .face_locator import FaceLocator

COMPONENTS = ("reference_net", "backbone", "face_locator", "whisper", "vae")


def _plain_config(model) -> dict:
    return {k: copy.deepcopy(v) for k, v in dict(model.config).items() if not k.startswith("_")}


class EchoMimicModels(nn.Module):
    """``reference_net, backbone, face_locator, whisper, vae`` + ``whisper_config`` + ``sampling``."""

    def __init__(self, reference_net: EchoReferenceNet, backbone: EchoBackbone,
                 face_locator: FaceLocator, whisper: nn.Module, vae: AutoencoderKL,
                 whisper_config: dict, sampling: dict):
        super().__init__()
        self.reference_net = reference_net
        self.backbone = backbone
        self.face_locator = face_locator
        self.whisper = whisper
        self.vae = vae
        self.whisper_config = dict(whisper_config)
        self.sampling = copy.deepcopy(dict(sampling))
        self.prediction_type = self.sampling.get("prediction_type", "v_prediction")
        self._check_wiring()

    def _check_wiring(self) -> None:
        pairs = [
            ("face_locator.embedding_channels", self.face_locator.config.embedding_channels,
             "backbone block_out_channels[0]", self.backbone.unet.config.block_out_channels[0]),
            ("whisper d_model", self.whisper_config["d_model"],
             "backbone cross_attention_dim", self.backbone.unet.config.cross_attention_dim),
            ("vae latent_channels", self.vae.config.latent_channels,
             "backbone in_channels", self.backbone.in_channels),
        ]
        for name_a, a, name_b, b in pairs:
            if a != b:
                raise ValueError(f"{name_a} = {a} does not match {name_b} = {b}")

    @property
    def variant(self) -> str:
        return str(self.sampling.get("variant", "normal"))

    def component_configs(self) -> dict:
        """JSON-ready config that rebuilds this container (``from_configs``)."""
        return {
            "reference_net": _plain_config(self.reference_net),
            "backbone": _plain_config(self.backbone),
            "face_locator": _plain_config(self.face_locator),
            "whisper": dict(self.whisper_config),
            "vae": _plain_config(self.vae),
            "sampling": copy.deepcopy(self.sampling),
        }

    @classmethod
    def from_configs(cls, configs: dict) -> EchoMimicModels:
        """Build (random init; use the meta device to skip it) from ``component_configs()``."""
        from ..io.whisper import build_encoder

        missing = [name for name in (*COMPONENTS, "sampling") if not configs.get(name)]
        if missing:
            raise ValueError(f"EchoMimic config lacks {missing}; expected {list(COMPONENTS)}")
        return cls(
            reference_net=EchoReferenceNet.from_config(configs["reference_net"]),
            backbone=EchoBackbone.from_config(configs["backbone"]),
            face_locator=FaceLocator.from_config(configs["face_locator"]),
            whisper=build_encoder(configs["whisper"]),
            vae=AutoencoderKL.from_config(configs["vae"]),
            whisper_config=configs["whisper"], sampling=configs["sampling"])
