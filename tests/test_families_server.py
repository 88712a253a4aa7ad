"""Issue 20, the drift bug: a Hallo checkpoint given speed layers by ``init-checkpoint
--from-hallo`` takes its speed input through EMO Sampler exactly as through the CLI.

The tiny Hallo fixture is converted, given speed layers, and its speed attention's zero output
projections set to seeded random values (as ``train --stage 3`` would leave them), so the speed
curve visibly changes the frames. The same square 128 px portrait, speech clip, seed and steps
then go through ``python -m emo_core generate`` and through the Hallo example workflow in a real
ComfyUI server, at two speeds: each speed gives the audio's exact frame count, the two speeds give
different videos (the curve reaches the speed layers), and CLI and EMO Sampler give the same
frames for the same speed (same mp4 writer, deterministic H.264 settings: decoded frames equal).
Before the fix the node path never passed ``speed=`` (and warned "Hallo weights have no speed
layers"): its two speeds gave one video.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.comfyui_harness import comfy_server_fixture
from tests.hallo_server_parts import SIZE, cli_frames, hallo_inputs, node_frames, server_spec

pytest.importorskip("onnx")  # test-only dependency: the tiny insightface models
pytest.importorskip("onnxruntime")

from tests.hallo_media import FRAMES, HAS_FIXTURE, WAV2VEC, convert_fixture  # noqa: E402

pytestmark = [pytest.mark.comfyui,
              pytest.mark.skipif(not HAS_FIXTURE, reason="Hallo golden fixture absent")]

SPEEDS = (0.0, 8.0)
CHECKPOINT = "hallo_speed.safetensors"


def _speed_checkpoint(root: Path) -> Path:
    """Converted Hallo + ``init-checkpoint --from-hallo`` + non-zero speed output projections."""
    from emo_core.cli.main import main
    from emo_core.io.emo_checkpoint import load_emo_checkpoint, save_emo_checkpoint
    from emo_core.models.speed_layers import is_speed_parameter

    hallo = convert_fixture(root / "hallo.safetensors")
    zero = root / "hallo_speed_zero.safetensors"
    assert main(["init-checkpoint", "--from-hallo", str(hallo), "--out", str(zero)]) == 0
    models = load_emo_checkpoint(zero)
    generator = torch.Generator().manual_seed(7)
    changed = 0
    with torch.no_grad():
        for name, parameter in models.named_parameters():
            if is_speed_parameter(name) and ".attention_blocks.2.to_out.0.weight" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
                changed += 1
    assert changed > 0
    return save_emo_checkpoint(models, root / CHECKPOINT)


def _prepare(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("families_server")
    files = {**hallo_inputs(root, "hallo"), "checkpoint": _speed_checkpoint(root)}
    _prepare.files = files  # read by the test through the ``files`` fixture
    return server_spec(files, [files["checkpoint"]], WAV2VEC)


comfy_server = comfy_server_fixture("comfy_server", scope="module", prepare=_prepare,
                                    name="emo_families_server")


def _cli(files: dict, speed: float, out: Path) -> np.ndarray:
    return cli_frames(files, files["checkpoint"], WAV2VEC, out, "--speed", str(speed))


def _node(server, speed: float) -> np.ndarray:
    return node_frames(server, files=_prepare.files, checkpoint=CHECKPOINT,
                       prefix=f"speed_{speed:g}", **{"7": {"mode": "constant", "speed": speed}})


def test_speed_reaches_the_speed_layers_identically_in_cli_and_emo_sampler(comfy_server,
                                                                            caplog):
    files = _prepare.files
    with caplog.at_level(logging.WARNING):
        cli = {s: _cli(files, s, files["root"] / f"cli_{s:g}.mp4") for s in SPEEDS}
    assert not [r for r in caplog.records if "ignoring the speed" in r.getMessage()]
    node = {s: _node(comfy_server, s) for s in SPEEDS}
    for speed in SPEEDS:
        assert cli[speed].shape == node[speed].shape == (FRAMES, SIZE, SIZE, 3)
    slow, fast = SPEEDS
    # the speed curve reaches the speed layers on both paths ...
    assert np.abs(cli[slow].astype(int) - cli[fast]).max() > 10
    assert np.abs(node[slow].astype(int) - node[fast]).max() > 10
    # ... and both paths compute the same video for the same speed
    for speed in SPEEDS:
        np.testing.assert_array_equal(node[speed], cli[speed], err_msg=f"speed {speed}")
    log = comfy_server.log_text()
    assert "reaches its speed layers" in log
    assert "ignoring the Speed Embedding" not in log
