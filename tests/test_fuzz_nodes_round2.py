"""Fuzz suite, node side, round 2 (issue 23): odd tensors and paths through the EMO nodes in ONE
real ComfyUI 0.3.75 server (started once for the module).

Odd IMAGE / AUDIO values come from the test-only ``EMOTestTensors`` node (tests/comfyui_probe):
1x1, 2x1 and 0-frame IMAGE batches, one-channel and 3-D IMAGEs, AUDIO batches of 2, 0 channels,
rate 0, int16 PCM, NaN/inf samples. Each prompt is a refusal (validation error, or an execution
error raised on purpose by emo_core, one line, nothing written) or a success with the exact frame
count. Classes: ``c4`` Frames to Video crashes, ``c5`` silently wrong (fps mismatch on the IMAGE
and LATENT paths, an AUDIO batch of 2), ``c6`` non-finite audio, ``c8`` messages (int16, 0
channels), ``c9`` the wav2vec2 choice ``none`` (issue 21, for EchoMimic) with an EMO checkpoint.
Totals go to test-artifacts/fuzz_nodes_round2_totals.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.comfyui_harness import PROBE_NODES, comfy_server_fixture, shared_demo_weights
from tests.conftest import fixture_path
from tests.test_fuzz_nodes import _classify as classify_prompt
from tests.test_fuzz_nodes import _submit, _videos

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parents[1]
API = REPO / "example_workflows" / "api"
FPS = 10.0

# case -> (EMOTestTensors inputs, Frames to Video inputs, expected frame count or None = refusal)
F2V_CASES = {
    "c4:f2v_image_1x1": ({"image_shape": "[1, 1, 1, 3]"}, {}, None),
    "c4:f2v_image_2x1": ({"image_shape": "[3, 1, 2, 3]"}, {}, None),
    "c4:f2v_image_1x2": ({"image_shape": "[3, 2, 1, 3]"}, {}, None),
    "c4:f2v_image_0_frames": ({"image_shape": "[0, 64, 64, 3]"}, {}, None),
    "c4:f2v_image_1_channel": ({"image_shape": "[2, 64, 64, 1]"}, {}, None),
    "c4:f2v_image_3d": ({"image_shape": "[64, 64, 3]"}, {}, None),
    "c4:f2v_prefix_folder_is_file": ({}, {"filename_prefix": "emo_fuzz_file/take"}, None),
    "c4:f2v_prefix_deep_folder_is_file": ({}, {"filename_prefix": "emo_fuzz_file/a/b"}, None),
    "c4:f2v_image_3x3_success": ({"image_shape": "[4, 3, 3, 3]"}, {}, 4),
    "c5:f2v_audio_batch_2": ({"audio_shape": "[2, 1, 16000]"}, {"audio": True}, None),
    "c8:f2v_audio_0_channels": ({"audio_shape": "[1, 0, 16000]"}, {"audio": True}, None),
    "c8:f2v_audio_rate_0": ({"sample_rate": 0}, {"audio": True}, None),
    "c8:f2v_audio_int16_success": ({"audio_dtype": "int16", "image_shape": "[10, 64, 64, 3]"},
                                   {"audio": True}, 10),
    "c6:f2v_audio_nan_success": ({"audio_fill": "nan", "image_shape": "[10, 64, 64, 3]"},
                                 {"audio": True}, 10),
    "c6:f2v_audio_nan_stereo_success": ({"audio_fill": "nan", "audio_shape": "[1, 2, 16000]",
                                         "image_shape": "[6, 64, 64, 3]"}, {"audio": True}, 6),
}
# Whole-workflow cases (demo weights): (what to change, expected frames or None)
WORKFLOW_CASES = {
    "c5:fps_mismatch_image_path": ("image", None),
    "c5:fps_mismatch_latent_path": ("latent", None),
    "c5:audio_features_batch_2": ("batch2", None),
    "c8:audio_features_0_channels": ("channels0", None),
    "c8:audio_features_int16_success": ("int16", 10),
    "c4:face_mask_no_face": ("noface", None),
    # issue 21: the wav2vec2 combo's "none" (for EchoMimic) with a checkpoint that needs wav2vec2
    "c9:wav2vec2_none_for_emo_checkpoint": ("w2v_none", None),
}
CASES = list(F2V_CASES) + list(WORKFLOW_CASES)
# Every node id of the pack -> its hostile cases here or in tests/test_fuzz_nodes.py (kept by
# tests/test_entry_points_fuzzed.py: a new node joins the fuzz suite in the same change).
NODE_FUZZ_CASES = {
    "EMOLoadModels": ["emo:emo_garbage", "w2v:w2v_truncated",
                      "c9:wav2vec2_none_for_emo_checkpoint"],
    "EMOEncodeReference": ["image:image_no_face", "image:image_1px"],
    "EMOAudioFeatures": ["audio:audio_silent", "c5:audio_features_batch_2",
                         "c8:audio_features_0_channels", "c8:audio_features_int16_success"],
    "EMOFaceLocatorMask": ["c4:face_mask_no_face"],
    "EMOSpeedEmbedding": ["option:keyframes_negative_time", "option:keyframes_text"],
    "EMOSampler": ["option:frames_32_no_motion", "c5:fps_mismatch_latent_path"],
    "EMOFramesToVideo": [k for k in F2V_CASES] + ["c5:fps_mismatch_image_path"],
}


def _prepare(tmp_path_factory) -> dict:

    root = tmp_path_factory.mktemp("fuzz_nodes2")
    weights = shared_demo_weights(tmp_path_factory)
    yaml_path = root / "extra_model_paths.yaml"
    yaml_path.write_text(
        f"emo_test_weights:\n  base_path: {weights}\n  emo: .\n  wav2vec2: .\n", encoding="utf-8")
    mediapipe = fixture_path("blaze_face_short_range.tflite").parent
    return {"models": {"mediapipe": [mediapipe / "blaze_face_short_range.tflite",
                                     mediapipe / "face_landmarker.task"]},
            "inputs": [fixture_path("portrait_astronaut.png"),
                       fixture_path("speech_arctic_a0007.wav")],
            "custom_nodes": [PROBE_NODES],
            "extra_args": ["--extra-model-paths-config", str(yaml_path)]}


comfy_server = comfy_server_fixture("comfy_server", scope="module", prepare=_prepare,
                                    name="emo_fuzz_nodes2_server")


def _tensors(**inputs) -> dict:
    values = {"image_shape": "[5, 64, 64, 3]", "audio_shape": "[1, 1, 16000]",
              "audio_dtype": "float32", "audio_fill": "tone", "sample_rate": 16000}
    values.update(inputs)
    return {"class_type": "EMOTestTensors", "inputs": values}


def _f2v_graph(key: str) -> dict:
    tensors, f2v, _ = F2V_CASES[key]
    inputs = {"fps": FPS, "filename_prefix": f2v.get("filename_prefix", "EMO/fuzz2"),
              "decode_batch": 4, "images": ["t", 0]}
    if f2v.get("audio"):
        inputs["audio"] = ["t", 1]
    return {"t": _tensors(**tensors), "f": {"class_type": "EMOFramesToVideo", "inputs": inputs}}


def _workflow_graph(key: str) -> dict:
    change, _ = WORKFLOW_CASES[key]
    workflow = json.loads((API / "emo_talking_portrait.json").read_text(encoding="utf-8"))
    workflow["5"]["inputs"]["fps"] = FPS
    workflow["9"]["inputs"]["fps"] = FPS
    workflow["8"]["inputs"].update(steps=1, guidance_mode="joint")
    workflow["3"]["inputs"]["checkpoint"] = "emo.safetensors"
    workflow["3"]["inputs"]["wav2vec2"] = "wav2vec2"
    if change == "image":  # features cut at 5 fps, video written at 10
        workflow["5"]["inputs"]["fps"] = FPS / 2
    elif change == "latent":
        workflow["5"]["inputs"]["fps"] = FPS / 2
        workflow["9"]["inputs"].pop("images")
        workflow["9"]["inputs"]["latent"] = ["8", 0]
        workflow["9"]["inputs"]["emo_models"] = ["3", 0]
    elif change in ("batch2", "channels0", "int16"):
        shape = {"batch2": "[2, 1, 16000]", "channels0": "[1, 0, 16000]"}.get(change,
                                                                              "[1, 1, 16000]")
        workflow["t"] = _tensors(audio_shape=shape, audio_dtype="int16" if change == "int16"
                                 else "float32")
        workflow["5"]["inputs"]["audio"] = ["t", 1]
        workflow["9"]["inputs"]["audio"] = ["5", 1]  # audio_16k: tagged with its fps
    elif change == "w2v_none":
        workflow["3"]["inputs"]["wav2vec2"] = "none"
    elif change == "noface":
        workflow["t"] = _tensors(image_shape="[1, 64, 64, 3]")
        workflow["6"]["inputs"]["image"] = ["t", 0]
    return workflow


def _expected(key: str) -> int | None:
    return (F2V_CASES[key][2] if key in F2V_CASES else WORKFLOW_CASES[key][1])


def _run(server, key: str) -> tuple[str, str]:
    workflow = _f2v_graph(key) if key in F2V_CASES else _workflow_graph(key)
    expected = _expected(key)
    if expected is None:
        return classify_prompt(server, key, workflow)
    # success: the one new video has exactly the expected frames
    before = _videos(server)
    prompt_id, refused = _submit(server, workflow)
    if prompt_id is None:
        return "unclear", json.dumps(refused)[:800]
    entry = server.wait_history(prompt_id, timeout=600)
    new = [v for v in _videos(server) if v not in before]
    if entry["status"]["status_str"] != "success" or len(new) != 1:
        return "unclear", json.dumps(entry["status"])[:1500] + f" new {new}"
    from tests.test_fuzz_cli import frame_count

    frames = frame_count(server.base_dir / "output" / new[0])
    return ("success" if frames == expected else "unclear"), f"{frames} frames of {expected}"


@pytest.fixture(scope="module")
def outcomes2(comfy_server):
    output = comfy_server.base_dir / "output"
    output.mkdir(parents=True, exist_ok=True)
    (output / "emo_fuzz_file").write_text("a file where a folder is expected")
    classes = {key: _run(comfy_server, key) for key in CASES}
    by_class: dict[str, dict[str, int]] = {}
    for key, (kind, _) in classes.items():
        by_class.setdefault(key.split(":")[0], {}).setdefault(kind, 0)
        by_class[key.split(":")[0]][kind] += 1
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "fuzz_nodes_round2_totals.json").write_text(json.dumps(
        {"cases": len(CASES), "by_issue_class": by_class,
         "detail": {k: {"class": c, "detail": d[:400]} for k, (c, d) in classes.items()}},
        indent=1))
    print(f"\nfuzz nodes round 2: {len(CASES)} prompts, {json.dumps(by_class)}")
    return classes


@pytest.mark.parametrize("key", CASES)
def test_prompt_has_its_class(outcomes2, key):
    expected = "refusal" if _expected(key) is None else "success"
    found, detail = outcomes2[key]
    assert found == expected, f"{key}: {found}: {detail}"
