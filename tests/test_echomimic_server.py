"""A converted EchoMimic acc checkpoint in a real ComfyUI server (issue 21): the example workflow
"EMO with EchoMimic weights" (fast, 6 steps), unchanged but for the video size and steps, runs
with NO wav2vec2 folder in the server's models (the combo offers only ``none``: whisper travels
inside the checkpoint), and gives what ``python -m emo_core generate`` gives.

The tiny fixture (``tests/fixtures/echomimic_tiny``, ``$EMO_ECHOMIMIC_FIXTURE``) is converted
with ``convert-echomimic --acc`` into ``models/emo``. The bundled portrait and 1.5 s of the
bundled speech (shorter than the example's 4 s: CPU time) go through EMO Sampler at 24 fps:
exactly round(1.5 x 24) = 36 frames (three sliding windows) and a 1.5 s audio track; the
audio features came from the checkpoint's whisper encoder, loaded by its own patcher
(``ComfyEMOAudioEncoder``), never a wav2vec2 one; the Speed Embedding is ignored with the
visible warning. The CLI with the same image, audio, size, steps and seed gives the same frames
(same face crop and 0.1 face-box mask on both paths, same mp4 writer).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.comfyui_harness import comfy_server_fixture, output_files
from tests.conftest import fixture_path
from tests.echomimic_fixture import convert_acc_fixture, skip_without_fixture
from tests.hallo_media import write_speech
from tests.test_pipeline_generate import decoded_frames, video_facts

pytestmark = [pytest.mark.comfyui, skip_without_fixture]

API = Path(__file__).resolve().parents[1] / "example_workflows" / "api" / \
    "emo_echomimic_weights.json"
CHECKPOINT = "echomimic_acc.safetensors"  # the name the example selects
SIZE, STEPS, FPS, SECONDS = 128, 2, 24, 1.5
FRAMES = 36  # round(SECONDS * FPS)
SPEECH = "echomimic_speech.wav"


def _prepare(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("echomimic_server")
    _prepare.checkpoint = convert_acc_fixture(root / CHECKPOINT)
    _prepare.speech = write_speech(root / SPEECH, SECONDS)
    return {"models": {"emo": [_prepare.checkpoint]},  # no wav2vec2 folder at all
            "inputs": [_prepare.speech]}


comfy_server = comfy_server_fixture("comfy_server", scope="module", prepare=_prepare,
                                    name="emo_echomimic_server")


def _node_video(server) -> Path:
    workflow = json.loads(API.read_text(encoding="utf-8"))
    assert workflow["3"]["inputs"]["wav2vec2"] == "none"
    assert workflow["8"]["inputs"]["steps"] == 6 and workflow["5"]["inputs"]["fps"] == FPS
    workflow["2"]["inputs"]["audio"] = SPEECH
    workflow["4"]["inputs"]["size"] = SIZE
    workflow["8"]["inputs"]["steps"] = STEPS
    entry = server.wait_history(server.post_prompt(workflow), timeout=900)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (record,) = output_files(entry)
    return server.base_dir / "output" / record["subfolder"] / record["filename"]


def _cli_video(out: Path) -> Path:
    from emo_core.cli.main import main

    code = main(["generate", "--checkpoint", str(_prepare.checkpoint),
                 "--mediapipe", str(fixture_path("blaze_face_short_range.tflite").parent),
                 "--image", str(fixture_path("portrait_astronaut.png")),
                 "--audio", str(_prepare.speech), "--out", str(out),
                 "--size", str(SIZE), "--steps", str(STEPS), "--fps", str(FPS), "--seed", "420"])
    assert code == 0
    return out


def test_echomimic_example_runs_without_wav2vec2_and_equals_the_cli(comfy_server, tmp_path):
    info = comfy_server.object_info()["EMOLoadModels"]["input"]["required"]["wav2vec2"]
    assert "none" in json.dumps(info)  # the only wav2vec2 choice this server offers
    node = _node_video(comfy_server)
    count, audio_seconds, video_seconds = video_facts(node)
    assert count == FRAMES
    assert audio_seconds == pytest.approx(SECONDS, abs=0.05)
    assert video_seconds == pytest.approx(FRAMES / FPS, abs=0.05)
    log = comfy_server.log_text()
    assert "Requested to load ComfyEMOAudioEncoder" in log
    assert "ComfyEMOWav2Vec2" not in log
    assert "EchoMimic checkpoint: ignoring the Speed Embedding input" in log
    assert log.count("EchoMimic checkpoint: ignoring") == 1  # the example sets nothing else
    cli = decoded_frames(_cli_video(tmp_path / "cli.mp4"))
    frames = decoded_frames(node)
    assert frames.shape == cli.shape == (FRAMES, SIZE, SIZE, 3)
    np.testing.assert_array_equal(frames, cli)
