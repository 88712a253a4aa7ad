"""The EMO network: ReferenceNet, Backbone and the conditioning encoders (see docs/ARCHITECTURE.md)."""

from .audio_attention import AudioAttention
from .audio_projection import AudioProjection
from .backbone import EMOBackbone
from .emo_models import EMOModels
from .face_locator import FaceLocator
from .presets import (
    build_emo_models,
    emo_component_configs,
    unet_config,
    vae_config,
    wav2vec2_config,
)
from .reference_attention import ReferenceBank, ReferenceReadProcessor, ReferenceWriteProcessor
from .reference_net import ReferenceFeatures, ReferenceNet
from .speed_encoder import SpeedEncoder, encode_speed_buckets
from .temporal import TemporalModule

__all__ = [
    "AudioAttention", "AudioProjection", "EMOBackbone", "EMOModels", "FaceLocator",
    "ReferenceBank", "ReferenceFeatures", "ReferenceNet", "ReferenceReadProcessor",
    "ReferenceWriteProcessor", "SpeedEncoder", "TemporalModule", "build_emo_models",
    "emo_component_configs", "encode_speed_buckets", "unet_config", "vae_config",
    "wav2vec2_config",
]
