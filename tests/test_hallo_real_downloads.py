"""``convert-hallo`` on Hallo's folder as users have it: stabilityai's sd-vae-ft-mse with the
legacy mid-block attention names converts and generates; each refusal names the file it is
really about (net.pth, the UNet config, the unet kwargs, the VAE folder), not another one.

The fixture folder (``$EMO_HALLO_FIXTURE``) is copied with symlinks; only the file a test
changes is rewritten. Counts and names come from the fixture's own files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from emo_core.cli.main import main
from tests.hallo_media import FIXTURE, FRAMES, HAS_FIXTURE, SAMPLES, WAV2VEC, write_speech
from tests.hallo_pretrained import (
    KWARGS,
    PRETRAINED,
    UNET_CONFIG,
    VAE,
    VAE_WEIGHTS,
    legacy_names,
    replace,
    symlink_layout,
)

pytestmark = pytest.mark.skipif(not HAS_FIXTURE,
                                reason=f"Hallo golden fixture folder {FIXTURE} is absent")


def _legacy_vae(root: Path) -> dict[str, torch.Tensor]:
    """Rewrite the VAE with the pre-0.14 names stabilityai's file has; returns the original."""
    weights = root / VAE_WEIGHTS
    original = load_file(str(weights))
    legacy = legacy_names(original)
    assert any(".query." in k for k in legacy), "the fixture VAE has no mid-block attention"
    save_file(legacy, str(replace(weights)))
    return original


def _convert(root: Path, out: Path, kwargs: Path = KWARGS) -> int:
    return main(["convert-hallo", "--pretrained-models", str(root), "--unet-kwargs", str(kwargs),
                 "--out", str(out)])


def test_legacy_vae_names_convert_and_generate_the_exact_frame_count(tmp_path, capsys):
    pytest.importorskip("onnx")  # test-only dependencies of the tiny face models
    pytest.importorskip("onnxruntime")
    from emo_core.video_io import read_video_frames
    from tests.onnx_tiny_models import write_face_models

    root = symlink_layout(tmp_path / "pretrained_models")
    original = _legacy_vae(root)
    out = tmp_path / "hallo.safetensors"
    assert _convert(root, out) == 0, capsys.readouterr().err
    written = load_file(str(out))
    # Every VAE tensor under its diffusers name, values unchanged.
    assert all(torch.equal(written[f"vae.{k}"], v) for k, v in original.items())
    assert sum(k.startswith("vae.") for k in written) == len(original)
    video = tmp_path / "talking.mp4"
    code = main(["generate", "--checkpoint", str(out), "--wav2vec", str(WAV2VEC),
                 "--mediapipe", str(SAMPLES / "mediapipe"),
                 "--image", str(SAMPLES / "portrait_astronaut.png"),
                 "--audio", str(write_speech(tmp_path / "speech.wav")), "--out", str(video),
                 "--face-analysis", str(write_face_models(tmp_path / "face_analysis")),
                 "--size", "128", "--steps", "1"])
    assert code == 0, capsys.readouterr().err
    assert read_video_frames(video).shape[0] == FRAMES


def _refusal(capsys, root: Path, out: Path, kwargs: Path = KWARGS) -> str:
    code = _convert(root, out, kwargs)
    err = capsys.readouterr().err
    assert code == 2 and not out.exists(), err
    assert not list(out.parent.glob(f".{out.name}.*")), "temp file left behind"
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_damaged_net_pth_is_blamed_not_the_configs(tmp_path, capsys):
    root = symlink_layout(tmp_path / "pm")
    net = torch.load(PRETRAINED / "hallo/net.pth", map_location="cpu", weights_only=True)
    # One resnet conv of the denoiser cut in half: the widths net.pth shows still fit the config.
    key = next(k for k in net if k.startswith("denoising_unet.down_blocks.0.resnets.")
               and k.endswith("conv1.weight"))
    net[key] = net[key][: net[key].shape[0] // 2].clone()
    torch.save(net, replace(root / "hallo/net.pth"))
    line = _refusal(capsys, root, tmp_path / "x.safetensors")
    assert line.startswith("error: net.pth") and "download" in line, line
    assert "config.json" not in line and "--unet-kwargs" not in line, line


def test_a_unet_config_that_does_not_fit_is_named(tmp_path, capsys):
    root = symlink_layout(tmp_path / "pm")
    config = json.loads((PRETRAINED / UNET_CONFIG).read_text())
    config["cross_attention_dim"] = config["cross_attention_dim"] * 2 + 8
    replace(root / UNET_CONFIG).write_text(json.dumps(config))
    line = _refusal(capsys, root, tmp_path / "x.safetensors")
    assert line.startswith("error: UNet config") and str(root / UNET_CONFIG) in line, line
    assert f"cross_attention_dim = {config['cross_attention_dim']}" in line, line


@pytest.mark.parametrize("edit, words", [
    (lambda kw: kw.update(audio_attention_dim=kw["audio_attention_dim"] + 8),
     "audio_attention_dim"),
    (lambda kw: kw["motion_module_kwargs"].update(temporal_position_encoding_max_len=24),
     "pos_encoder.pe"),
])
def test_unet_kwargs_that_do_not_fit_are_named(tmp_path, capsys, edit, words):
    root = symlink_layout(tmp_path / "pm")
    kwargs = json.loads(KWARGS.read_text())
    edit(kwargs)
    path = tmp_path / "my_kwargs.json"
    path.write_text(json.dumps(kwargs))
    line = _refusal(capsys, root, tmp_path / "x.safetensors", kwargs=path)
    assert f"--unet-kwargs {str(path)!r}" in line and words in line, line
    assert "config.json" not in line, line


def test_a_vae_folder_that_does_not_fit_is_named(tmp_path, capsys):
    root = symlink_layout(tmp_path / "pm")
    config = json.loads((PRETRAINED / VAE / "config.json").read_text())
    config["latent_channels"] = 8
    replace(root / VAE / "config.json").write_text(json.dumps(config))
    line = _refusal(capsys, root, tmp_path / "x.safetensors")
    assert str(root / VAE) in line and "sd-vae-ft-mse" in line, line
    assert "net.pth" not in line and "unet" not in line.lower(), line


def test_a_vae_missing_tensors_is_named(tmp_path, capsys):
    root = symlink_layout(tmp_path / "pm")
    weights = root / VAE_WEIGHTS
    state = load_file(str(weights))
    dropped = sorted(state)[0]
    del state[dropped]
    save_file(state, str(replace(weights)))
    line = _refusal(capsys, root, tmp_path / "x.safetensors")
    assert f"VAE weights {str(weights)!r}" in line and dropped.split(".")[0] in line, line
    assert "net.pth" not in line, line


def test_no_vae_folder_converts_without_a_vae_and_says_so(tmp_path, capsys):
    root = symlink_layout(tmp_path / "pm")
    shutil.rmtree(root / VAE)
    out = tmp_path / "x.safetensors"
    assert _convert(root, out) == 0, capsys.readouterr().err
    assert "no VAE" in capsys.readouterr().out
    assert not any(k.startswith("vae.") for k in load_file(str(out)))


def test_an_existing_folder_as_out_is_refused_before_reading(tmp_path, capsys):
    folder = tmp_path / "taken.safetensors"
    folder.mkdir()
    # A missing --pretrained-models would be refused too: the folder --out is checked first.
    code = _convert(tmp_path / "nothing_here", folder)
    err = capsys.readouterr().err
    assert code == 2 and "is a folder" in err and "Traceback" not in err, err
    assert list(folder.iterdir()) == []
