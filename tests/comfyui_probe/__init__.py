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
