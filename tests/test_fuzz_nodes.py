"""Fuzz suite, node side: hostile checkpoints, wav2vec2 folders, images, audio and options through
the EMO nodes in ONE real ComfyUI 0.3.75 server (started once for the module).

Each prompt is the committed talking-portrait workflow with one input made hostile. Each must be
a clean refusal: the prompt fails validation (HTTP 400 naming the node input) or ends with an
execution error raised on purpose by emo_core (CheckpointError / EMOInputError / NoFaceError, not
a RuntimeError or KeyError from deep inside), and no video or ``.part`` appears in the output
folder. The last prompt is a normal run that must still give exactly the expected frame count:
the server survived every refusal. Totals by class go to test-artifacts/fuzz_nodes_totals.json.
"""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import av
import pytest

from tests.comfyui_harness import comfy_server_fixture, output_files, shared_demo_weights
from tests.conftest import fixture_path
from tests.fuzz_inputs import (
    hostile_audio,
    hostile_emo_checkpoints,
    hostile_images,
    hostile_wav2vec,
)

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parents[1]
API = REPO / "example_workflows" / "api"
FPS, SECONDS = 5.0, 4.0  # speech_arctic_a0007.wav is 4.0 s: 20 frames
OUR_ERRORS = ("CheckpointError", "EMOInputError", "NoFaceError")

EMO_CASES = ["emo_garbage", "emo_truncated", "emo_huge_header", "emo_no_metadata",
             "emo_config_nested", "emo_negative_channels", "emo_context_tokens_2_40",
             "emo_layers_mismatch", "emo_int8_tensor", "emo_nan_weights", "emo_missing_tensor",
             "emo_format_2"]
W2V_CASES = ["w2v_truncated", "w2v_layers_20000", "w2v_hidden_1e9", "w2v_int8", "w2v_nan",
             "w2v_pickle_bin", "w2v_config_nested"]
MEDIA_CASES = {"image:image_no_face": ("1", "image", "image_no_face.png"),
               "image:image_1px": ("1", "image", "image_1px.png"),
               "audio:audio_float_unnormalised": ("2", "audio", "audio_float_unnormalised.wav"),
               "audio:audio_silent": ("2", "audio", "audio_silent.wav")}
OPTION_CASES = {"option:keyframes_negative_time": ("7", {"mode": "keyframes",
                                                         "keyframes": "-1:5, 2:3"}),
                "option:frames_32_no_motion": ("8", {"frames_per_clip": 32, "motion_frames": 0}),
                "option:keyframes_text": ("7", {"mode": "keyframes", "keyframes": "fast"})}
CASES = ([f"emo:{n}" for n in EMO_CASES] + [f"w2v:{n}" for n in W2V_CASES] + list(MEDIA_CASES)
         + list(OPTION_CASES) + ["success:after_all_refusals"])


def _prepare(tmp_path_factory) -> dict:

    root = tmp_path_factory.mktemp("fuzz_nodes")
    weights = shared_demo_weights(tmp_path_factory)
    emo = hostile_emo_checkpoints(root / "emo", weights)
    w2v = hostile_wav2vec(root / "w2v", weights)
    images = hostile_images(root / "img", fixture_path("portrait_astronaut.png"))
    audio = hostile_audio(root / "aud")
    yaml_path = root / "extra_model_paths.yaml"
    yaml_path.write_text(
        f"emo_test_weights:\n  base_path: {weights}\n  emo: .\n  wav2vec2: .\n", encoding="utf-8")
    mediapipe = fixture_path("blaze_face_short_range.tflite").parent
    return {
        "models": {"mediapipe": [mediapipe / "blaze_face_short_range.tflite",
                                 mediapipe / "face_landmarker.task"],
                   "emo": [emo[n] for n in EMO_CASES], "wav2vec2": [w2v[n] for n in W2V_CASES]},
        "inputs": [fixture_path("portrait_astronaut.png"), fixture_path("speech_arctic_a0007.wav"),
                   *(images[Path(f).stem] for k, (_, _, f) in MEDIA_CASES.items()
                     if k.startswith("image")),
                   *(audio[Path(f).stem] for k, (_, _, f) in MEDIA_CASES.items()
                     if k.startswith("audio"))],
        "extra_args": ["--extra-model-paths-config", str(yaml_path)],
    }


comfy_server = comfy_server_fixture("comfy_server", scope="module", prepare=_prepare,
                                    name="emo_fuzz_nodes_server")


def _workflow(key: str) -> dict:
    workflow = json.loads((API / "emo_talking_portrait.json").read_text(encoding="utf-8"))
    workflow["5"]["inputs"]["fps"] = FPS
    workflow["9"]["inputs"]["fps"] = FPS
    workflow["8"]["inputs"].update(steps=1, guidance_mode="joint")
    group, name = key.split(":", 1)
    if group == "emo":
        workflow["3"]["inputs"]["checkpoint"] = f"{name}.safetensors"
    elif group == "w2v":
        workflow["3"]["inputs"]["wav2vec2"] = name
    elif key in MEDIA_CASES:
        node, field, value = MEDIA_CASES[key]
        workflow[node]["inputs"][field] = value
    elif key in OPTION_CASES:
        node, values = OPTION_CASES[key]
        workflow[node]["inputs"].update(values)
    return workflow


def _videos(server) -> list[str]:
    out = server.base_dir / "output"
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                  and (".mp4" in p.name or p.name.endswith(".part")))


def _submit(server, workflow: dict) -> tuple[str | None, dict]:
    """(prompt id, {}) when queued, or (None, the answer) when validation refused it."""
    try:
        answer = server._request("/prompt", body={"prompt": workflow, "client_id": "emo-fuzz"})
    except urllib.error.HTTPError as err:  # HTTP 400: validation failed
        return None, json.loads(err.read().decode("utf-8"))
    if answer.get("node_errors"):
        return None, answer
    return answer["prompt_id"], {}


def _classify(server, key: str, workflow: dict | None = None) -> tuple[str, str]:
    before = _videos(server)
    prompt_id, refused = _submit(server, workflow or _workflow(key))
    if prompt_id is None:
        text = json.dumps(refused)
        leaked = _videos(server) != before
        return ("leak" if leaked else "refusal"), f"validation: {text[:600]}"
    entry = server.wait_history(prompt_id, timeout=600)
    messages = {kind: data for kind, data in entry["status"]["messages"]}
    leaked = [v for v in _videos(server) if v not in before]
    if key.startswith("success"):
        files = output_files(entry)
        if entry["status"]["status_str"] != "success" or len(files) != 1:
            return "unclear", json.dumps(messages)[:1500]
        path = server.base_dir / "output" / files[0]["subfolder"] / files[0]["filename"]
        with av.open(str(path)) as container:
            frames = sum(1 for _ in container.decode(video=0))
        expected = round(SECONDS * FPS)
        return ("success" if frames == expected else "unclear"), f"{frames} frames"
    if leaked:
        return "leak", f"left {leaked}"
    error = messages.get("execution_error")
    if entry["status"]["status_str"] != "error" or error is None:
        return "unclear", json.dumps(messages)[:1500]
    message = error["exception_message"].strip()  # ComfyUI appends a newline
    if not error["exception_type"].endswith(OUR_ERRORS) or "\n" in message:
        return "crash", f"{error['exception_type']}: {error['exception_message'][:1500]}"
    return "refusal", f"{error['node_type']}: {error['exception_message']}"


@pytest.fixture(scope="module")
def outcomes(comfy_server):
    classes = {key: _classify(comfy_server, key) for key in CASES}
    totals = {name: sum(1 for c, _ in classes.values() if c == name)
              for name in ("refusal", "success", "crash", "leak", "hang", "unclear")}
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "fuzz_nodes_totals.json").write_text(json.dumps(
        {"cases": len(CASES), "totals": totals,
         "detail": {k: {"class": c, "detail": d[:400]} for k, (c, d) in classes.items()}},
        indent=1))
    print(f"\nfuzz nodes: {len(CASES)} prompts, {json.dumps(totals)}")
    return classes


def test_at_least_20_prompts_and_no_crash_or_leak(outcomes):
    assert len(CASES) >= 20
    bad = {k: v for k, v in outcomes.items() if v[0] not in ("refusal", "success")}
    assert not bad, bad


@pytest.mark.parametrize("key", CASES)
def test_prompt_has_its_class(outcomes, key):
    expected = "success" if key.startswith("success") else "refusal"
    found, detail = outcomes[key]
    assert found == expected, f"{key}: {found}: {detail}"
    if expected == "refusal" and key.startswith(("emo:", "w2v:")):
        name = key.split(":", 1)[1]
        assert name in detail, detail  # the message names the file or folder it refused
