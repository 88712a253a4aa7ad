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

import numpy as np
import pytest

from tests.comfyui_harness import comfy_server_fixture
from tests.hallo2_fixture import hallo2_fixture
from tests.hallo_media import FRAMES
from tests.hallo_server_parts import SIZE, cli_frames, hallo_inputs, node_frames, server_spec

pytest.importorskip("onnx")  # test-only dependency: the tiny insightface models
pytest.importorskip("onnxruntime")

FIXTURE = hallo2_fixture()
WAV2VEC = FIXTURE / "pretrained_models/wav2vec/wav2vec2-base-960h"
pytestmark = [pytest.mark.comfyui,
              pytest.mark.skipif(not (FIXTURE / "outputs.safetensors").is_file(),
                                 reason=f"Hallo2 golden fixture folder {FIXTURE} is absent")]

CHECKPOINTS = {"hallo2": "hallo2.safetensors", "hallo": "hallo2_as_hallo.safetensors"}


def _prepare(tmp_path_factory) -> dict:
    from emo_core.cli.cmd_convert_hallo import convert_hallo

    root = tmp_path_factory.mktemp("hallo2_server")
    kwargs = json.loads((FIXTURE / "hallo_unet_kwargs.json").read_text())
    checkpoints = {variant: convert_hallo(FIXTURE / "pretrained_models", root / name, kwargs,
                                          hallo2=variant == "hallo2")
                   for variant, name in CHECKPOINTS.items()}
    files = {**hallo_inputs(root, "hallo2"), "checkpoints": checkpoints}
    _prepare.files = files  # read by the test
    # the workflow's wav2vec2 choice is the folder name: wav2vec2-base-960h, as the fixture's
    return server_spec(files, list(checkpoints.values()), WAV2VEC)


comfy_server = comfy_server_fixture("comfy_server", scope="module", prepare=_prepare,
                                    name="emo_hallo2_server")


def test_hallo2_checkpoint_runs_hallo2_in_cli_and_emo_sampler(comfy_server):
    files = _prepare.files
    cli = cli_frames(files, files["checkpoints"]["hallo2"], WAV2VEC,
                     files["root"] / "cli_hallo2.mp4")
    node = {variant: node_frames(comfy_server, files, name, variant)
            for variant, name in CHECKPOINTS.items()}
    assert cli.shape == node["hallo2"].shape == node["hallo"].shape == (FRAMES, SIZE, SIZE, 3)
    np.testing.assert_array_equal(node["hallo2"], cli)
    assert np.abs(node["hallo2"].astype(int) - node["hallo"]).max() > 10
    assert "is Hallo2: motion frames masked at rate 0.25" in comfy_server.log_text()
