"""civit.ai style through a real ComfyUI server: CheckpointLoaderSimple (tiny SD1.5 file in
models/checkpoints) -> LoraLoader (tiny kohya LoRA in models/loras) -> Load EMO Models -> ... ->
video, with the delta the node logs checked against the LoRA delta computed from the file, and a
wrong-architecture (SD2) MODEL refused while the server keeps working (the refusal runs
first: test order is part of the check, the successful run after it proves the server kept
serving).

The checkpoint keeps 320 base channels and cross-attention width 768 (what ComfyUI needs to call
it SD15, see test_style_comfy_bridge.py), so the EMO checkpoint here is built with those widths.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.comfyui_harness import (
    PROBE_NODES,
    comfy_server_fixture,
    execution_error,
    output_files,
    shared_demo_weights,
)
from tests.conftest import fixture_path
from tests.test_nodes_paths import video_frames, write_short_wav
from tests.test_style_comfy_bridge import comfy_emo_models, comfy_sd15_config
from tests.test_style_deltas import make_lora, random_unet, write_sd15_file

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parents[1]
LORA_STRENGTH = 0.7
REFERENCE_FACTOR = 0.5
FPS = 4.0
FRAMES = 8  # 2 s of speech at 4 fps: one clip of 8 frames keeps the 320-channel UNet cheap
LORA_FILE = "tiny_kohya_lora.safetensors"


def _prepare(tmp_path_factory) -> dict:
    from emo_core.io.emo_checkpoint import save_emo_checkpoint

    root = tmp_path_factory.mktemp("emo_style")
    demo = shared_demo_weights(tmp_path_factory)  # only its wav2vec2 folder is used
    emo = root / "emo_sd15_widths.safetensors"
    save_emo_checkpoint(comfy_emo_models(seed=0, with_vae=True), emo)
    config = comfy_sd15_config()
    sd15 = write_sd15_file(root / "tiny_sd15.safetensors", random_unet(config, 1))
    sd2 = write_sd15_file(root / "tiny_sd2.safetensors",
                          random_unet(comfy_sd15_config(1024, linear=True), 2))
    state, _ = make_lora(config)
    lora = root / LORA_FILE
    save_file(state, str(lora))
    mediapipe = fixture_path("blaze_face_short_range.tflite").parent
    return {
        "models": {"checkpoints": [sd15, sd2], "loras": [lora], "emo": [emo],
                   "wav2vec2": [demo / "wav2vec2"],
                   "mediapipe": [mediapipe / "blaze_face_short_range.tflite",
                                 mediapipe / "face_landmarker.task"]},
        "inputs": [fixture_path("portrait_astronaut.png"),
                   write_short_wav(root / "speech_2s.wav", FRAMES / FPS)],
        "custom_nodes": [PROBE_NODES],  # GET /emo_test/loaded_models (tests/test_nodes_memory.py)
    }


comfy_server = comfy_server_fixture("comfy_server", scope="module", prepare=_prepare,
                                    name="emo_style_server")


def _workflow(style_ckpt: str) -> dict:
    api = json.loads((REPO / "example_workflows" / "api" / "emo_civitai_style.json")
                     .read_text(encoding="utf-8"))
    api["11"]["inputs"]["ckpt_name"] = style_ckpt
    api["13"]["inputs"]["ckpt_name"] = "tiny_sd15.safetensors"
    api["2"]["inputs"]["audio"] = "speech_2s.wav"
    api["12"]["inputs"].update(lora_name=LORA_FILE,
                               strength_model=LORA_STRENGTH)
    api["3"]["inputs"].update(checkpoint="emo_sd15_widths.safetensors", wav2vec2="wav2vec2",
                              style_strength=1.0, style_strength_backbone=1.0,
                              style_strength_reference=REFERENCE_FACTOR)
    api["4"]["inputs"]["size"] = 64
    api["5"]["inputs"]["fps"] = FPS
    api["9"]["inputs"]["fps"] = FPS
    api["8"]["inputs"].update(steps=1, frames_per_clip=FRAMES)
    return api


def test_wrong_architecture_is_an_execution_error_and_the_server_keeps_working(comfy_server):
    entry = comfy_server.wait_history(comfy_server.post_prompt(_workflow("tiny_sd2.safetensors")),
                                      timeout=600)
    message = execution_error(entry) or ""
    assert message.startswith("EMOLoadModels: style_model: a SD20 model was connected")
    assert "Stable Diffusion 1.5" in message and "Load Checkpoint" in message, entry["status"]
    assert output_files(entry) == []
    assert comfy_server.process.poll() is None  # the next test runs a prompt on this server


def lora_file_deltas(path: Path) -> list[torch.Tensor]:
    """Every UNet delta of a kohya LoRA file at weight 1: ``alpha / rank * up @ down``, computed
    from the stored tensors alone (text-encoder layers skipped: EMO has no text branch)."""
    state = load_file(str(path))
    deltas = []
    for key in sorted(k for k in state if k.endswith(".lora_down.weight")):
        module = key.removesuffix(".lora_down.weight")
        if not module.startswith("lora_unet_"):
            continue
        down, up = state[key].double(), state[f"{module}.lora_up.weight"].double()
        rank = down.shape[0]
        alpha = float(state[f"{module}.alpha"]) if f"{module}.alpha" in state else rank
        deltas.append(alpha / rank * (up.flatten(1) @ down.flatten(1)))
    return deltas


def test_lora_workflow_completes_and_reports_exactly_the_lora_delta(comfy_server):
    entry = comfy_server.wait_history(
        comfy_server.post_prompt(_workflow("tiny_sd15.safetensors")), timeout=600)
    assert entry["status"]["status_str"] == "success", entry["status"]
    log = comfy_server.log_text()
    found = re.findall(r"(backbone|reference_net): strength ([\d.]+), (\d+) tensors changed, "
                       r"max \|delta\| ([\d.e+-]+), L2 ([\d.e+-]+)", log)
    assert found, comfy_server.log_tail()
    report = {name: (float(s), int(n), float(m), float(l2)) for name, s, n, m, l2 in found}
    # The deltas come from the file ComfyUI loaded (not through any code under test); the
    # reshape to conv kernels changes neither the L2 norm nor the largest value.
    expected = lora_file_deltas(comfy_server.base_dir / "models" / "loras" / LORA_FILE)
    l2 = float(torch.sqrt(sum(d.square().sum() for d in expected)))
    peak = max(float(d.abs().max()) for d in expected)
    for name, factor in (("backbone", 1.0), ("reference_net", REFERENCE_FACTOR)):
        strength, changed, max_abs, total = report[name]
        assert strength == pytest.approx(factor)
        assert changed == len(expected)
        # logged with 9 significant digits; fp32 (w + d) - w rounding is ~1e-7 relative
        assert total == pytest.approx(LORA_STRENGTH * factor * l2, rel=1e-5)
        assert max_abs == pytest.approx(LORA_STRENGTH * factor * peak, rel=1e-5)
    (record,) = output_files(entry)
    frames = video_frames(comfy_server.base_dir / "output" / record["subfolder"] /
                          record["filename"])
    assert frames.shape == (FRAMES, 64, 64, 3)


# Issue 15: ComfyUI's memory management owns the EMO networks. This module's server already
# holds a tiny SD1.5 checkpoint for the core side; tests/comfyui_probe shows ComfyUI's own list.
EMO_PATCHERS = {"ComfyEMOBackbone", "ComfyEMOReferenceNet", "ComfyEMOVAE", "ComfyEMOWav2Vec2"}
LOADS_BACKBONE = "Requested to load ComfyEMOBackbone"  # load_models_gpu's log line


def _loaded(server) -> list[dict]:
    """comfy.model_management.current_loaded_models, read inside the server."""
    return server.get_json("/emo_test/loaded_models")


def _emo_loaded(server) -> dict[str, dict]:
    return {r["class"]: r for r in _loaded(server) if r["class"] in EMO_PATCHERS}


def _emo_workflow(seed: int, allow_silence: bool) -> dict:
    """The style workflow with ``seed`` and ``allow_silence``: a changed seed runs the sampler
    and video again, a changed allow_silence Wav2Vec Audio Features (same features for speech)."""
    api = _workflow("tiny_sd15.safetensors")
    api["8"]["inputs"]["seed"] = seed
    api["5"]["inputs"]["allow_silence"] = allow_silence
    return api


def _run_emo(server, seed: int, allow_silence: bool) -> None:
    """Run :func:`_emo_workflow`: the video has exactly FRAMES frames."""
    entry = server.wait_history(server.post_prompt(_emo_workflow(seed, allow_silence)),
                                timeout=600)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (record,) = output_files(entry)
    frames = video_frames(server.base_dir / "output" / record["subfolder"] / record["filename"])
    assert frames.shape == (FRAMES, 64, 64, 3)


def _checkpoint_bytes(path: Path) -> int:
    return sum(t.numel() * t.element_size() for t in load_file(str(path)).values())


def test_comfyui_counts_unloads_and_reloads_the_emo_models(comfy_server):
    _run_emo(comfy_server, seed=11, allow_silence=True)
    emo = _emo_loaded(comfy_server)
    assert set(emo) == EMO_PATCHERS, _loaded(comfy_server)
    for record in emo.values():  # --cpu: ComfyUI's device is the CPU; loaded whole
        assert record["device"] == "cpu" and record["loaded_bytes"] == record["size_bytes"] > 0
    # ComfyUI counts exactly the checkpoint's weights (fp32 on CPU) in the three EMO networks
    networks = sum(emo[name]["size_bytes"] for name in EMO_PATCHERS - {"ComfyEMOWav2Vec2"})
    emo_file = comfy_server.base_dir / "models" / "emo" / "emo_sd15_widths.safetensors"
    assert networks == _checkpoint_bytes(emo_file)

    # then a core checkpoint load through ComfyUI's own path (ModelSave calls load_models_gpu
    # on Load Checkpoint's MODEL). The EMO nodes stay in the prompt, unchanged: ComfyUI keeps
    # only the outputs of the latest prompt's nodes, so this keeps Load EMO Models cached.
    both = _emo_workflow(11, allow_silence=True)
    both["90"] = {"class_type": "ModelSave",
                  "inputs": {"model": ["13", 0], "filename_prefix": "memory_test/core"}}
    entry = comfy_server.wait_history(comfy_server.post_prompt(both), timeout=300)
    assert entry["status"]["status_str"] == "success", entry["status"]
    classes = [r["class"] for r in _loaded(comfy_server)]
    assert classes[0] == "BaseModel" and set(classes) >= EMO_PATCHERS, classes

    # ComfyUI's "Unload Models" (POST /free): unload_all_models in the prompt worker
    # ComfyUI's prompt worker can miss the flag's wake-up: /free notifies the queue while the
    # worker may still be between reading the flags and waiting again (its post-prompt
    # gc.collect sits there); it then sleeps up to 1000 s. So the request is repeated, as a
    # user would click "Unload Models" again; every request is the same idempotent flag.
    deadline = time.monotonic() + 90
    while _loaded(comfy_server):
        assert time.monotonic() < deadline, _loaded(comfy_server)
        comfy_server.post_json("/free", {"unload_models": True})
        retry = time.monotonic() + 5
        while _loaded(comfy_server) and time.monotonic() < retry:
            time.sleep(0.2)

    # Load EMO Models stays cached (unload_models keeps the node cache): the next run loads
    # the same evicted patchers again through load_models_gpu, nothing is read from disk
    log = comfy_server.log_text()
    reads, loads = log.count("loading EMO checkpoint"), log.count(LOADS_BACKBONE)
    _run_emo(comfy_server, seed=12, allow_silence=False)
    log = comfy_server.log_text()
    assert log.count("loading EMO checkpoint") == reads
    assert log.count(LOADS_BACKBONE) > loads
    emo = _emo_loaded(comfy_server)
    assert set(emo) == EMO_PATCHERS, _loaded(comfy_server)
    assert all(r["loaded_bytes"] == r["size_bytes"] for r in emo.values())
