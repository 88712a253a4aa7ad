"""Latent previews of the EMO Sampler over a real ComfyUI server's websocket.

One server for the module, started as a user who wants previews starts it:
``--preview-method latent2rgb`` (ComfyUI's default is ``none``; the previews-off side is checked in
``test_nodes_server.py``, whose server runs with the default). It also runs with
``--disable-metadata``, so the same run shows that Frames to Video then writes no workflow tags
(the tags themselves are checked in ``test_nodes_server.py`` and, dropped into the page, in
``test_browser.py``).

The EMO run is tiny: 1.6 s of speech at 5 fps = 8 frames in 2 clips of 4, 2 steps, joint guidance,
128 px (the demo weights); the Hallo run (converted tiny fixture) is 2 clips of 1 step. The module
measured 40 s on the shared 2-core machine, server start included.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from tests.comfyui_harness import comfy_server_fixture, output_files, shared_demo_weights
from tests.comfyui_ws import WsClient
from tests.conftest import fixture_path
from tests.nodes_workflow_graphs import ui_path
from tests.test_nodes_paths import write_short_wav
from tests.test_nodes_server import _prepare_hallo

pytestmark = pytest.mark.comfyui

REPO_ROOT = Path(__file__).resolve().parents[1]
API = REPO_ROOT / "example_workflows" / "api" / "emo_talking_portrait.json"
FPS, SECONDS, FRAMES_PER_CLIP, STEPS = 5.0, 1.6, 4, 2
CLIPS = 2  # round(1.6 * 5) = 8 frames in clips of 4
PREVIEW_SIZE = 96  # --preview-size: the server fits each preview into this square
SAMPLER, VIDEO = "8", "9"  # node ids of the example API workflow


def _prepare(tmp_path_factory) -> dict:

    root = tmp_path_factory.mktemp("emo_previews")
    weights = shared_demo_weights(tmp_path_factory)
    mediapipe = fixture_path("blaze_face_short_range.tflite").parent
    speech = write_short_wav(root / "short_speech.wav", SECONDS)
    hallo_models: dict = {}
    inputs = [fixture_path("portrait_astronaut.png"), speech]
    _prepare_hallo(root / "hallo", hallo_models, inputs)  # no-op without the fixture / onnx
    return {
        "models": {"emo": [weights / "emo.safetensors", *hallo_models.pop("emo", [])],
                   "wav2vec2": [weights / "wav2vec2", *hallo_models.pop("wav2vec2", [])],
                   "mediapipe": [mediapipe / "blaze_face_short_range.tflite",
                                 mediapipe / "face_landmarker.task"], **hallo_models},
        "inputs": inputs,
        "extra_args": ["--preview-method", "latent2rgb", "--preview-size", str(PREVIEW_SIZE),
                       "--disable-metadata"],
    }


preview_server = comfy_server_fixture("preview_server", scope="module", prepare=_prepare,
                                      name="emo_preview_server")


def _workflow() -> dict:
    workflow = json.loads(API.read_text(encoding="utf-8"))
    workflow["2"]["inputs"]["audio"] = "short_speech.wav"
    workflow["5"]["inputs"]["fps"] = FPS
    workflow[VIDEO]["inputs"].update(fps=FPS, filename_prefix="EMO/previews")
    workflow[SAMPLER]["inputs"].update(steps=STEPS, guidance_mode="joint",
                                       frames_per_clip=FRAMES_PER_CLIP)
    return workflow


@pytest.fixture(scope="module")
def preview_run(preview_server):
    """One EMO run queued over a websocket client that announced preview metadata."""
    ui_workflow = json.loads(ui_path("emo_talking_portrait").read_text(encoding="utf-8"))
    with WsClient(preview_server) as client:
        prompt_id = client.queue(_workflow(), extra_pnginfo={"workflow": ui_workflow})
        ended = client.wait(prompt_id)
    entry = preview_server.wait_history(prompt_id)
    return client, ended, entry


def test_previews_arrive_over_the_websocket_during_sampling(preview_run):
    client, ended, _ = preview_run
    assert ended == "execution_success", client.json_messages("execution_error")
    previews = client.previews()
    # One preview per denoising step of every clip (the sampler renders each step, as KSampler
    # does; ComfyUI neither drops nor merges them), none for the clip preparation units.
    assert len(previews) == STEPS * CLIPS, [p.index for p in previews]
    started = client.json_messages("execution_start")
    assert started, "no execution_start message"
    first, last = client.node_span(SAMPLER)
    assert started[0][0] < first
    # Every preview arrived while the sampler ran: after its 'executing' message, before the
    # next node's, and each names the sampler node (PREVIEW_IMAGE_WITH_METADATA frames).
    assert all(first < p.index < last for p in previews), (first, last, previews)
    assert {p.node for p in previews} == {SAMPLER}
    # Interleaved with the sampler's progress, not sent in a burst at its end.
    progress = [i for i, data in client.json_messages("progress") if data["node"] == SAMPLER]
    assert progress and previews[0].index < progress[-1], (progress, previews)
    for preview in previews:
        # A decodable JPEG of the square reference (128 px video, 16x16 latents) that the server
        # fitted into --preview-size.
        assert preview.image.format == "JPEG"
        assert preview.image.size == (PREVIEW_SIZE, PREVIEW_SIZE)
    pixels = [np.asarray(p.image.convert("RGB"), dtype=np.float32) for p in previews]
    # The clean estimate changes from step to step: these are live renders, not one image resent.
    assert max(float(np.abs(a - b).mean()) for a, b in zip(pixels[:-1], pixels[1:], strict=True)) > 1.0


def test_hallo_checkpoints_preview_every_step_too(preview_server):
    """The EMO Sampler's Hallo branch (converted tiny fixture, as in test_nodes_server): 0.92 s
    at 25 fps = 2 clips of 16 frames, 1 step each -> 2 previews of the sampler node."""
    info = preview_server.object_info()
    if "hallo.safetensors" not in info["EMOLoadModels"]["input"]["required"]["checkpoint"][1][
            "options"]:
        pytest.skip("Hallo fixture or the onnx package absent: no converted checkpoint placed")
    workflow = json.loads((API.parent / "emo_hallo_weights.json").read_text(encoding="utf-8"))
    workflow["2"]["inputs"]["audio"] = "hallo_speech.wav"
    workflow["4"]["inputs"].update(size=128, face_analysis="models")
    workflow[SAMPLER]["inputs"].update(steps=1)
    with WsClient(preview_server) as client:
        assert client.wait(client.queue(workflow)) == "execution_success"
    previews = client.previews()
    first, last = client.node_span(SAMPLER)
    assert len(previews) == 2 and all(first < p.index < last for p in previews), previews
    assert {p.node for p in previews} == {SAMPLER}
    assert {p.image.size for p in previews} == {(PREVIEW_SIZE, PREVIEW_SIZE)}


def test_disable_metadata_writes_no_workflow_tags(preview_run, preview_server):
    _, ended, entry = preview_run
    assert ended == "execution_success"
    (record,) = output_files(entry)
    path = preview_server.base_dir / "output" / record["subfolder"] / record["filename"]
    with av.open(str(path)) as container:
        tags = dict(container.metadata)
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == round(SECONDS * FPS)
    # ComfyUI passed prompt and extra_pnginfo (the client sent a workflow) but the server runs
    # with --disable-metadata, so none is written, as core SaveVideo does.
    assert "prompt" not in tags and "workflow" not in tags, tags


def _user_data_box(path: Path) -> bytes:
    """The mp4's ``udta`` box (size + type + payload): where the tags live."""
    data = path.read_bytes()
    start = data.index(b"udta") - 4
    return data[start:start + int.from_bytes(data[start:start + 4], "big")]


def test_mp4_tags_are_byte_identical_to_core_save_video(tmp_path):
    """The same metadata dict through core's VideoFromComponents.save_to (what SaveVideo calls
    for frames) and through emo_core's Mp4Writer: the same ``udta/meta/keys/ilst`` bytes."""
    from fractions import Fraction

    import torch

    from tests.comfyui_harness import require_comfyui

    root = str(require_comfyui())
    if root not in sys.path:
        sys.path.insert(0, root)
    from comfy_api.latest import InputImpl, Types

    from emo_core.pipeline.video import Mp4Writer

    ui_workflow = json.loads(ui_path("emo_talking_portrait").read_text(encoding="utf-8"))
    metadata = {"workflow": ui_workflow, "prompt": _workflow()}
    core = tmp_path / "core.mp4"
    components = Types.VideoComponents(images=torch.zeros(3, 64, 64, 3), audio=None,
                                       frame_rate=Fraction(5))
    InputImpl.VideoFromComponents(components).save_to(str(core), metadata=metadata)
    ours = tmp_path / "ours.mp4"
    with Mp4Writer(ours, FPS, 64, 64, metadata=metadata) as writer:
        writer.write(np.zeros((3, 64, 64, 3), np.uint8))
    assert _user_data_box(ours) == _user_data_box(core)
    with av.open(str(ours)) as container:
        assert json.loads(container.metadata["workflow"]) == ui_workflow
