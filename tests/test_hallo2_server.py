"""A converted Hallo2 checkpoint in a real ComfyUI server: the Hallo example workflow, unchanged
but for the checkpoint, runs Hallo2 (masked motion frames, 60 s audio pieces) exactly as
``python -m emo_core generate`` does, and not Hallo's loop on the same weights.

The tiny Hallo2 fixture (``tests/hallo2_fixture.py``) is converted twice: as Hallo2 (its
``hallo2/net.pth``) and, for contrast, the same tensors as Hallo. The same square 128 px
portrait, speech clip, seed and steps go through the CLI and through EMO Sampler: each gives the
audio's exact frame count, CLI and node give the same frames (same mp4 writer, deterministic
H.264 settings), and the node's Hallo2 video differs from its Hallo video (the masking reached the
node path; a node path that ignored the checkpoint's variant would give the Hallo video).
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.comfyui_harness import comfy_server_fixture, output_files
from tests.conftest import fixture_path
from tests.hallo2_fixture import hallo2_fixture
from tests.hallo_media import FRAMES, write_speech

pytest.importorskip("onnx")  # test-only dependency: the tiny insightface models
pytest.importorskip("onnxruntime")

FIXTURE = hallo2_fixture()
WAV2VEC = FIXTURE / "pretrained_models/wav2vec/wav2vec2-base-960h"
pytestmark = [pytest.mark.comfyui,
              pytest.mark.skipif(not (FIXTURE / "outputs.safetensors").is_file(),
                                 reason=f"Hallo2 golden fixture folder {FIXTURE} is absent")]

API = Path(__file__).resolve().parents[1] / "example_workflows" / "api"
SIZE = 128
CHECKPOINTS = {"hallo2": "hallo2.safetensors", "hallo": "hallo2_as_hallo.safetensors"}


def _square_portrait(root: Path) -> Path:
    """The bundled portrait's face crop at the video size (both front-ends take it whole)."""
    from emo_core.face.crop import crop_image, face_crop_box
    from emo_core.face.detect import find_face

    photo = np.asarray(Image.open(fixture_path("portrait_astronaut.png")).convert("RGB"))
    box = face_crop_box(find_face(photo, fixture_path("blaze_face_short_range.tflite").parent),
                        photo.shape[:2], out_size=SIZE)
    path = root / "hallo2_square.png"
    Image.fromarray(crop_image(photo, box)).save(path)
    return path


def _prepare(tmp_path_factory) -> dict:
    from emo_core.cli.cmd_convert_hallo import convert_hallo
    from tests.onnx_tiny_models import write_face_models

    root = tmp_path_factory.mktemp("hallo2_server")
    kwargs = json.loads((FIXTURE / "hallo_unet_kwargs.json").read_text())
    checkpoints = {variant: convert_hallo(FIXTURE / "pretrained_models", root / name, kwargs,
                                          hallo2=variant == "hallo2")
                   for variant, name in CHECKPOINTS.items()}
    mediapipe = fixture_path("blaze_face_short_range.tflite").parent
    faces = write_face_models(root / "face_analysis")
    files = {"checkpoints": checkpoints, "faces": faces, "mediapipe": mediapipe,
             "image": _square_portrait(root), "audio": write_speech(root / "hallo2_speech.wav"),
             "root": root}
    _prepare.files = files  # read by the test
    # the workflow's wav2vec2 choice is the folder name: wav2vec2-base-960h, as the fixture's
    return {"models": {"emo": list(checkpoints.values()), "wav2vec2": [WAV2VEC],
                       "insightface": [faces / "models"],
                       "mediapipe": [mediapipe / "blaze_face_short_range.tflite",
                                     mediapipe / "face_landmarker.task"]},
            "inputs": [files["image"], files["audio"]]}


comfy_server = comfy_server_fixture("comfy_server", scope="module", prepare=_prepare,
                                    name="emo_hallo2_server")


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _cli(files: dict, out: Path) -> np.ndarray:
    from emo_core.cli.main import main

    code = main(["generate", "--checkpoint", str(files["checkpoints"]["hallo2"]),
                 "--wav2vec", str(WAV2VEC), "--mediapipe", str(files["mediapipe"]),
                 "--image", str(files["image"]), "--audio", str(files["audio"]),
                 "--out", str(out), "--size", str(SIZE), "--steps", "1",
                 "--face-analysis", str(files["faces"])])
    assert code == 0
    return _frames(out)


def _node(server, variant: str) -> np.ndarray:
    workflow = json.loads((API / "emo_hallo_weights.json").read_text(encoding="utf-8"))
    workflow["1"]["inputs"]["image"] = "hallo2_square.png"
    workflow["2"]["inputs"]["audio"] = "hallo2_speech.wav"
    workflow["3"]["inputs"]["checkpoint"] = CHECKPOINTS[variant]
    workflow["4"]["inputs"].update(crop="center", size=SIZE, face_analysis="models")
    workflow["8"]["inputs"].update(steps=1, seed=0)  # the CLI's default seed
    workflow["9"]["inputs"]["filename_prefix"] = f"EMO/{variant}"
    entry = server.wait_history(server.post_prompt(workflow), timeout=600)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (record,) = output_files(entry)
    return _frames(server.base_dir / "output" / record["subfolder"] / record["filename"])


def test_hallo2_checkpoint_runs_hallo2_in_cli_and_emo_sampler(comfy_server):
    files = _prepare.files
    cli = _cli(files, files["root"] / "cli_hallo2.mp4")
    node = {variant: _node(comfy_server, variant) for variant in CHECKPOINTS}
    assert cli.shape == node["hallo2"].shape == node["hallo"].shape == (FRAMES, SIZE, SIZE, 3)
    np.testing.assert_array_equal(node["hallo2"], cli)
    assert np.abs(node["hallo2"].astype(int) - node["hallo"]).max() > 10
    assert "is Hallo2: motion frames masked at rate 0.25" in comfy_server.log_text()
