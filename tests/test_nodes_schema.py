"""Node schemas as ComfyUI 0.3.75 sees them, and the example workflows against those schemas.

The pack is imported the way ComfyUI imports it (package from the folder, ``comfy_entrypoint``)
in a subprocess with a real ComfyUI on ``sys.path``, so the ComfyUI modules never leak into this
pytest process. Schemas are compared through ``GET_NODE_INFO_V1`` (what /object_info serves).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.comfyui_harness import EMO_NODE_IDS, require_comfyui
from tests.nodes_workflow_graphs import (
    GRAPHS,
    MIN_SCALE,
    OUTPUTS,
    SOCKETS,
    TITLE_HEIGHT,
    TITLES_UI,
    UI_ONLY_AFTER,
    VIEW,
    to_api,
    to_ui,
    ui_path,
)

# Imports the pack inside a real ComfyUI: runs on every ComfyUI version CI tests.
pytestmark = pytest.mark.comfyui

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO_ROOT / "example_workflows"

PROBE = r"""
import asyncio, importlib.util, json, sys
comfy, repo = sys.argv[1], sys.argv[2]
sys.path.insert(0, comfy)
from comfy.cli_args import args
args.cpu = True  # no GPU here; ComfyUI's device probe would fail otherwise
import os, tempfile
import folder_paths
# Loading the pack copies its samples into the input folder: a throwaway one here (never the
# checkout's own), already holding a user's file under one of the sample names.
inputs = tempfile.mkdtemp(prefix="emo-probe-input-")
folder_paths.set_input_directory(inputs)
with open(os.path.join(inputs, "speech_arctic_a0007.wav"), "wb") as mine:
    mine.write(b"the user's own file")
spec = importlib.util.spec_from_file_location("emo_pack_probe", repo + "/__init__.py",
                                              submodule_search_locations=[repo])
pack = importlib.util.module_from_spec(spec)
sys.modules["emo_pack_probe"] = pack
spec.loader.exec_module(pack)
assert not hasattr(pack, "NODE_CLASS_MAPPINGS")
extension = asyncio.run(pack.comfy_entrypoint())
classes = asyncio.run(extension.get_node_list())
info = {c.GET_NODE_INFO_V1()["name"]: c.GET_NODE_INFO_V1() for c in classes}
# The pack folder is on sys.path now; "nodes" must still mean ComfyUI's nodes.py.
info["nodes_origin"] = importlib.util.find_spec("nodes").origin
info["input_after_load"] = {n: open(os.path.join(inputs, n), "rb").read().hex()
                            for n in sorted(os.listdir(inputs))}
print("JSON" + json.dumps(info, default=str))
"""

DISPLAY = {
    "EMOLoadModels": "Load EMO Models", "EMOEncodeReference": "Encode Reference",
    "EMOAudioFeatures": "Wav2Vec Audio Features", "EMOFaceLocatorMask": "Face Locator Mask",
    "EMOSpeedEmbedding": "Speed Embedding", "EMOSampler": "EMO Sampler",
    "EMOFramesToVideo": "Frames to Video",
}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


@pytest.fixture(scope="module")
def schemas() -> dict:
    comfyui = require_comfyui()
    done = subprocess.run([sys.executable, "-c", PROBE, str(comfyui), str(REPO_ROOT)],
                          capture_output=True, text=True, timeout=240, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("JSON"))
    return json.loads(line[4:])


# Core loaders used by the workflows: only their file widget has an API value.
CORE = {"LoadImage": {"image": ("COMBO", {})}, "LoadAudio": {"audio": ("COMBO", {})},
        "CheckpointLoaderSimple": {"ckpt_name": ("COMBO", {})},
        "LoraLoader": {"model": ("MODEL", {}), "clip": ("CLIP", {}), "lora_name": ("COMBO", {}),
                       "strength_model": ("FLOAT", {}), "strength_clip": ("FLOAT", {})}}


def _inputs(info: dict) -> dict:
    """name -> (type, options) over required + optional, in schema order."""
    merged = {}
    for group in ("required", "optional"):
        for name in info["input_order"].get(group, []):
            spec = info["input"][group][name]
            merged[name] = (spec[0] if isinstance(spec[0], str) else "COMBO",
                            spec[1] if len(spec) > 1 else {})
    return merged


def test_seven_nodes_with_ids_names_and_category(schemas):
    assert set(EMO_NODE_IDS) <= set(schemas)
    for node_id in EMO_NODE_IDS:
        info = schemas[node_id]
        assert info["display_name"] == DISPLAY[node_id]
        assert info["category"] == "EMO"
        assert info["description"], node_id
    assert schemas["nodes_origin"].endswith("nodes.py"), schemas["nodes_origin"]


def test_loading_the_pack_puts_the_samples_into_input_and_keeps_user_files(schemas):
    """The examples' Load Image / Load Audio files are in input/ once the pack has loaded
    (issue 25); a file of the same name already there is the user's and stays as it was."""
    found = schemas["input_after_load"]
    samples = REPO_ROOT / "emo_core" / "samples"
    assert sorted(found) == ["portrait_astronaut.png", "speech_arctic_a0007.wav"], sorted(found)
    assert bytes.fromhex(found["portrait_astronaut.png"]) == (
        samples / "portrait_astronaut.png").read_bytes()
    assert bytes.fromhex(found["speech_arctic_a0007.wav"]) == b"the user's own file"


def test_sampler_tooltip_says_how_to_turn_on_live_previews(schemas):
    description = schemas["EMOSampler"]["description"]
    assert "Live preview method" in description and "--preview-method" in description


def test_every_input_has_a_tooltip(schemas):
    for node_id in EMO_NODE_IDS:
        for name, (_, options) in _inputs(schemas[node_id]).items():
            tooltip = options.get("tooltip", "")
            assert len(tooltip.split()) >= 3, f"{node_id}.{name} tooltip too thin: {tooltip!r}"


def test_socket_types_match_the_design_table(schemas):
    for node_id in EMO_NODE_IDS:
        info = schemas[node_id]
        outputs = list(zip(info["output_name"], info["output"], strict=True))
        assert outputs == OUTPUTS[node_id], node_id
        sockets = [(n, t) for n, (t, _) in _inputs(info).items() if t not in WIDGET_TYPES]
        assert sockets == SOCKETS[node_id], node_id
    assert schemas["EMOFramesToVideo"]["output_node"] is True
    sampler = _inputs(schemas["EMOSampler"])
    assert sampler["seed"][1].get("control_after_generate") is True
    assert "ddim" in sampler["scheduler"][1]["options"]


def _ui_to_api(ui: dict, schemas: dict) -> dict:
    """What ComfyUI's frontend sends for a UI workflow: widgets by schema order, links by id."""
    links = {row[0]: row for row in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node["type"] == "Note":
            continue
        values = list(node["widgets_values"])
        linked = {i["name"]: links[i["link"]] for i in node["inputs"] if i["link"] is not None}
        inputs = {}
        spec = CORE.get(node["type"]) or _inputs(schemas[node["type"]])
        for name, (kind, _) in spec.items():
            if name in linked:
                row = linked[name]
                assert row[3] == node["id"] and row[5] == kind, (node["type"], name, row)
                inputs[name] = [str(row[1]), row[2]]
            elif kind in WIDGET_TYPES:
                inputs[name] = values.pop(0)
                for _ in UI_ONLY_AFTER.get((node["type"], name), []):
                    values.pop(0)
        assert values == [], (node["type"], "unused widget values", values)
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_example_workflows_are_current_and_consistent(name, schemas):
    nodes = GRAPHS[name]()
    ui = json.loads(ui_path(name).read_text(encoding="utf-8"))
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text(encoding="utf-8"))
    # The committed files are what tests/nodes_workflow_graphs.py writes (rerun it after edits).
    assert ui == to_ui(nodes) and api == to_api(nodes)
    assert ui_path(name).with_suffix(".jpg").stat().st_size > 1000
    converted = _ui_to_api(ui, schemas)
    assert converted == {k: {"class_type": v["class_type"], "inputs": v["inputs"]}
                         for k, v in api.items()}
    used = {v["class_type"] for v in api.values()}
    assert set(EMO_NODE_IDS) <= used, set(EMO_NODE_IDS) - used
    note = next(n for n in ui["nodes"] if n["type"] == "Note")
    assert "real weights" in note["widgets_values"][0]


def test_example_workflow_files_are_named_for_the_template_browser_and_open_in_view():
    """The template browser titles cards with the file name; the saved view shows every node
    clear of the frontend's overlays (measured live in tests/test_browser.py)."""
    served = sorted(p.stem for p in WORKFLOWS.glob("*.json"))  # what ComfyUI lists
    assert served == sorted(TITLES_UI.values())
    for name in GRAPHS:
        ui = json.loads(ui_path(name).read_text(encoding="utf-8"))
        scale, (dx, dy) = ui["extra"]["ds"]["scale"], ui["extra"]["ds"]["offset"]
        assert MIN_SCALE <= scale <= 1.0, (name, scale)  # below 0.6 litegraph drops the text
        for node in ui["nodes"]:
            (x, y), (w, h) = node["pos"], node["size"]
            left, top = (x + dx) * scale, (y - TITLE_HEIGHT + dy) * scale
            right, bottom = (x + w + dx) * scale, (y + h + dy) * scale
            assert VIEW[0] <= left and right <= VIEW[2], (name, node["type"], left, right)
            assert VIEW[1] <= top and bottom <= VIEW[3], (name, node["type"], top, bottom)
