"""The EMO network: ReferenceNet, Backbone and the conditioning encoders (see docs/ARCHITECTURE.md)."""

from .audio_attention import AudioAttention
from .audio_projection import AudioProjection
from .backbone import EMOBackbone
from .conditioning import BackboneCall, ReferenceSink
from .emo_models import EMOModels
from .face_locator import FaceLocator
from .presets import (
    build_emo_models,
    emo_component_configs,
    unet_config,
    vae_config,
    wav2vec2_config,
)
from .reference_attention import ContextAttention, ReferenceAttention
from .reference_net import ReferenceFeatures, ReferenceNet
from .speed_encoder import SpeedEncoder, encode_speed_buckets
from .temporal import TemporalModule

__all__ = [
    "AudioAttention", "AudioProjection", "BackboneCall", "ContextAttention", "EMOBackbone",
    "EMOModels", "FaceLocator", "ReferenceAttention", "ReferenceFeatures", "ReferenceNet",
    "ReferenceSink", "SpeedEncoder", "TemporalModule", "build_emo_models",
    "emo_component_configs", "encode_speed_buckets", "unet_config", "vae_config",
    "wav2vec2_config",
]
