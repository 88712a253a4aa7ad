"""The pack loads in a real ComfyUI 0.3.75 server and exposes its seven nodes."""

from __future__ import annotations

import pytest

from tests.comfyui_harness import EMO_NODE_IDS, PACK_NAME, comfy_server_fixture

pytestmark = pytest.mark.comfyui

comfy_server = comfy_server_fixture("comfy_server", scope="module")


def test_pack_imports_without_errors(comfy_server):
    problems = comfy_server.import_problems()
    assert problems == [], "ComfyUI reported import problems:\n" + "\n".join(problems)
    # The import-times table lists every pack it loaded; ours must be there (and not FAILED).
    loaded = [line for line in comfy_server.log_text().splitlines()
              if line.rstrip().endswith(f"custom_nodes/{PACK_NAME}")]
    assert loaded and all("IMPORT FAILED" not in line for line in loaded), loaded


def test_object_info_lists_the_seven_emo_nodes(comfy_server):
    info = comfy_server.object_info()
    missing = [node_id for node_id in EMO_NODE_IDS if node_id not in info]
    assert missing == [], f"missing from /object_info: {missing}"
    for node_id in EMO_NODE_IDS:
        node = info[node_id]
        # DESIGN §4: node ids prefixed EMO, category EMO (sub-categories allowed).
        assert node["category"].split("/")[0] == "EMO", (node_id, node["category"])
        assert node["python_module"].endswith(PACK_NAME), (node_id, node["python_module"])


def test_core_nodes_still_load(comfy_server):
    # Guards against the pack breaking ComfyUI itself (e.g. by shadowing a core module name).
    info = comfy_server.object_info()
    for core in ("KSampler", "LoadImage", "SaveImage", "LoadAudio", "CheckpointLoaderSimple"):
        assert core in info, core
