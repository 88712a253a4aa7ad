"""Test-only ComfyUI custom node pack: one read-only route showing ComfyUI's own accounting of
loaded models, so a real-server test can see what ``comfy.model_management`` holds.

``GET /emo_test/loaded_models`` -> one record per entry of
``comfy.model_management.current_loaded_models`` (newest first): the class of the module the
``ModelPatcher`` holds, the load device, and the bytes ComfyUI counts as loaded and in total.
Linked into ``custom_nodes`` only by the tests that ask for it (``ComfyServer(custom_nodes=...)``);
never part of the pack.
"""

import comfy.model_management as model_management
from aiohttp import web
from server import PromptServer

NODE_CLASS_MAPPINGS = {}  # a pack without it is reported as "Skip ... module" by ComfyUI


def loaded_models() -> list[dict]:
    records = []
    for entry in list(model_management.current_loaded_models):
        patcher = entry.model  # weak reference: None once the patcher was garbage collected
        if patcher is None:
            continue
        records.append({"class": type(patcher.model).__name__, "device": str(entry.device),
                        "loaded_bytes": int(patcher.loaded_size()),
                        "size_bytes": int(patcher.model_size())})
    return records


@PromptServer.instance.routes.get("/emo_test/loaded_models")
async def _loaded_models(request):
    return web.json_response(loaded_models())


class EMOTestTensors:
    """Test-only source of odd IMAGE / AUDIO / MASK values (shapes, dtypes, NaN) for the node
    fuzz suite: ComfyUI's own nodes cannot make a 0-frame IMAGE or an int16 AUDIO batch."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image_shape": ("STRING", {"default": "[1, 64, 64, 3]"}),
            "audio_shape": ("STRING", {"default": "[1, 1, 16000]"}),
            "audio_dtype": ("STRING", {"default": "float32"}),
            "audio_fill": ("STRING", {"default": "tone"}),
            "sample_rate": ("INT", {"default": 16000, "min": 0, "max": 1000000}),
        }}

    RETURN_TYPES = ("IMAGE", "AUDIO", "MASK")
    FUNCTION = "make"
    CATEGORY = "EMO/test"

    def make(self, image_shape, audio_shape, audio_dtype, audio_fill, sample_rate):
        import json

        import torch

        image = torch.full(json.loads(image_shape), 0.5)
        shape = json.loads(audio_shape)
        t = torch.arange(shape[-1]) / 16000.0
        wave = (0.4 * torch.sin(2 * 3.14159 * 180 * t)).expand(*shape).clone()
        if audio_fill == "nan":
            wave[..., 100:140] = float("nan")
            wave[..., 900] = float("inf")
        if audio_dtype == "int16":
            wave = (wave * 32767).to(torch.int16)
        return (image, {"waveform": wave, "sample_rate": sample_rate}, torch.zeros(1, 64, 64))


NODE_CLASS_MAPPINGS["EMOTestTensors"] = EMOTestTensors
