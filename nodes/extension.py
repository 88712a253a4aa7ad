"""The pack's ComfyUI extension: registers the model folders, puts the example workflows' samples
into input/ and lists the seven nodes."""

from __future__ import annotations

import logging

from . import comfy_bridge as bridge
from .comfy_bridge import ComfyExtension, io
from .node_audio_features import EMOAudioFeatures
from .node_encode_reference import EMOEncodeReference
from .node_face_mask import EMOFaceLocatorMask
from .node_frames_to_video import EMOFramesToVideo
from .node_load_models import EMOLoadModels
from .node_sampler import EMOSampler
from .node_speed import EMOSpeedEmbedding

logger = logging.getLogger(__name__)

NODES: list[type[io.ComfyNode]] = [
    EMOLoadModels,
    EMOEncodeReference,
    EMOAudioFeatures,
    EMOFaceLocatorMask,
    EMOSpeedEmbedding,
    EMOSampler,
    EMOFramesToVideo,
]


class EMOExtension(ComfyExtension):
    async def on_load(self) -> None:
        bridge.register_model_folders()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> EMOExtension:
    bridge.register_model_folders()
    # The example workflows load the bundled samples by name from input/ (README, "Example
    # workflows"): they are there before the first workflow opens.
    bridge.copy_samples_to_input()
    return EMOExtension()
