"""No pickled code runs through any loader entry point: each one is handed a torch pickle whose
state dict carries an object that would create a marker file when unpickled, in the file name the
loader expects. Each must refuse it with a CheckpointError and the marker must not exist.
(tests/test_io_safe_load.py covers the shared reader itself.)"""

from __future__ import annotations

import json

import pytest

from emo_core.errors import CheckpointError
from emo_core.models.presets import unet_config
from emo_core.style.spatial import spatial_shapes
from tests.fuzz_inputs import malicious_pickle


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "pickled code ran"


def test_emo_checkpoint(tmp_path, marker):
    from emo_core.io.emo_checkpoint import load_emo_checkpoint

    for name in ("emo.ckpt", "emo.pt"):
        with pytest.raises(CheckpointError, match="safetensors"):
            load_emo_checkpoint(malicious_pickle(tmp_path / name, marker))


def test_sd15_single_file_unet_and_vae(tmp_path, marker):
    from emo_core.io.sd15 import load_sd15_unet, load_sd15_vae

    path = malicious_pickle(tmp_path / "v1-5-pruned.ckpt", marker)
    with pytest.raises(CheckpointError, match="Python code"):
        load_sd15_unet(path, unet_config("tiny"))
    with pytest.raises(CheckpointError, match="Python code"):
        load_sd15_vae(path)


def test_sd15_diffusers_folder(tmp_path, marker):
    from emo_core.io.sd15 import load_sd15_unet

    (tmp_path / "pipe" / "unet").mkdir(parents=True)
    malicious_pickle(tmp_path / "pipe" / "unet" / "diffusion_pytorch_model.bin", marker)
    with pytest.raises(CheckpointError, match="Python code"):
        load_sd15_unet(tmp_path / "pipe", unet_config("tiny"))


def test_kohya_lora(tmp_path, marker):
    from emo_core.style.lora import load_lora

    config = unet_config("tiny")
    with pytest.raises(CheckpointError, match="Python code"):
        load_lora(malicious_pickle(tmp_path / "lora.pt", marker), spatial_shapes(config), config)


def test_animatediff_motion_module(tmp_path, marker):
    from emo_core.io.animatediff import load_motion_module

    with pytest.raises(CheckpointError, match="Python code"):
        load_motion_module(malicious_pickle(tmp_path / "mm_sd_v15_v2.ckpt", marker))


def test_wav2vec2_pytorch_model_bin(tmp_path, marker, demo_weights):
    from emo_core.io.wav2vec import load_wav2vec

    folder = tmp_path / "wav2vec2"
    folder.mkdir()
    config = json.loads((demo_weights / "wav2vec2" / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config))
    malicious_pickle(folder / "pytorch_model.bin", marker)
    with pytest.raises(CheckpointError, match="wav2vec2"):
        load_wav2vec(folder)


@pytest.mark.parametrize("role", ["style", "base"])
def test_style_and_base_checkpoints(tmp_path, marker, role):
    from emo_core.style.sources import CheckpointDeltaSource
    from tests.test_style_deltas import random_unet, write_sd15_file

    config = unet_config("tiny")
    good = write_sd15_file(tmp_path / "good.safetensors", random_unet(config, 1))
    bad = malicious_pickle(tmp_path / f"{role}.ckpt", marker)
    files = {"style": bad, "base": good} if role == "style" else {"style": good, "base": bad}
    with pytest.raises(CheckpointError, match="Python code"):
        CheckpointDeltaSource(config, **files)
