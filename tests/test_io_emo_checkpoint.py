"""EMO checkpoint: save -> load gives the same model (outputs compared), bad files load nothing."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from emo_core.errors import CheckpointError
from emo_core.io import emo_checkpoint
from emo_core.io.demo_weights import randomize_zero_parameters
from emo_core.io.emo_checkpoint import load_emo_checkpoint, save_emo_checkpoint
from emo_core.io.safe_load import read_safetensors_metadata, save_safetensors_atomic
from tests.test_io_ldm_names import tiny_unet, unet_to_ldm


@pytest.fixture(scope="module")
def models():
    from emo_core.models.presets import build_emo_models

    built = build_emo_models("tiny", seed=3, with_vae=True).eval()
    # Non-zero new branches, so the forward below depends on every saved tensor.
    randomize_zero_parameters(built, seed=4)
    return built


@pytest.fixture(scope="module")
def saved(models, tmp_path_factory):
    return save_emo_checkpoint(models, tmp_path_factory.mktemp("ckpt") / "emo.safetensors")


def _backbone_out(models):
    gen = torch.Generator().manual_seed(0)
    bb = models.backbone.config
    with torch.no_grad():
        return models.backbone(
            torch.randn(1, 2, 4, 8, 8, generator=gen), 500,
            audio_tokens=torch.randn(1, 2, 3, bb.audio_token_dim, generator=gen),
            speed_tokens=torch.randn(1, 2, 1, bb.speed_token_dim, generator=gen),
            context=models.context,
        )


def test_round_trip_gives_identical_tensors_and_outputs(models, saved):
    metadata = read_safetensors_metadata(saved)
    assert metadata["emo_format"] == "1"
    assert set(json.loads(metadata["emo_config"])) == {
        "reference_net", "backbone", "face_locator", "audio_projection", "speed_encoder",
        "context", "sampling", "vae"}
    loaded = load_emo_checkpoint(saved)
    assert not loaded.training
    expected, got = models.state_dict(), loaded.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert torch.equal(loaded.speed_encoder.centers, models.speed_encoder.centers)
    # Same weights, same CPU kernels, same inputs: bit-identical, no tolerance needed.
    reference = _backbone_out(models)
    assert reference.abs().mean() > 0
    assert torch.equal(_backbone_out(loaded), reference)


def test_folder_form_and_dtype(models, tmp_path):
    save_emo_checkpoint(models, tmp_path / "bundle")
    assert (tmp_path / "bundle" / "emo.safetensors").is_file()
    half = load_emo_checkpoint(tmp_path / "bundle", dtype=torch.float16)
    assert {p.dtype for p in half.parameters()} == {torch.float16}
    assert torch.equal(half.context, models.context.half())


@pytest.fixture
def no_tensor_reads(monkeypatch):
    """Fail the test if load_emo_checkpoint reads tensor data (it must check first)."""
    def refuse(*args, **kwargs):
        raise AssertionError("tensor data was read before the checks passed")
    monkeypatch.setattr(emo_checkpoint, "iter_tensors", refuse)


def _rewrite(saved, tmp_path, edit_config=None, metadata=None):
    tensors = load_file(str(saved))
    meta = dict(read_safetensors_metadata(saved)) if metadata is None else metadata
    if edit_config:
        config = json.loads(meta["emo_config"])
        edit_config(config)
        meta["emo_config"] = json.dumps(config)
    path = tmp_path / "edited.safetensors"
    save_file(tensors, str(path), metadata=meta)
    return path


def test_wrong_config_lists_mismatches_and_reads_no_tensors(saved, tmp_path, no_tensor_reads):
    def wider_audio(config):
        config["backbone"]["audio_token_dim"] = 96
        config["audio_projection"]["output_dim"] = 96
    path = _rewrite(saved, tmp_path, wider_audio)
    with pytest.raises(CheckpointError, match="mis-shaped") as info:
        load_emo_checkpoint(path)
    assert "audio_modules" in str(info.value) and "init-checkpoint" in str(info.value)

    def no_vae(config):
        del config["vae"]
    with pytest.raises(CheckpointError, match=r"\d+ unexpected: vae\."):
        load_emo_checkpoint(_rewrite(saved, tmp_path, no_vae))

    def broken(config):
        del config["backbone"]
    with pytest.raises(CheckpointError, match="does not describe a valid EMO model"):
        load_emo_checkpoint(_rewrite(saved, tmp_path, broken))


def test_prediction_type_travels_and_older_files_read_as_epsilon(models, tmp_path):
    models.prediction_type = "v_prediction"
    try:
        path = save_emo_checkpoint(models, tmp_path / "v.safetensors")
    finally:
        models.prediction_type = "epsilon"
    assert load_emo_checkpoint(path).prediction_type == "v_prediction"

    def written_before_the_field(config):
        del config["sampling"]
    assert load_emo_checkpoint(_rewrite(path, tmp_path, written_before_the_field)
                               ).prediction_type == "epsilon"

    def unknown(config):
        config["sampling"]["prediction_type"] = "x0"
    with pytest.raises(CheckpointError, match="prediction_type must be one of"):
        load_emo_checkpoint(_rewrite(path, tmp_path, unknown))


@pytest.mark.parametrize("metadata, match", [
    ({}, "EMO tensor names but no EMO metadata"),
    ({"emo_config": "{}", "emo_format": "2"}, "format '2'"),
    ({"emo_config": "{not json", "emo_format": "1"}, "not valid JSON"),
    ({"emo_config": "[1, 2]", "emo_format": "1"}, "must map component names"),
])
def test_bad_metadata(saved, tmp_path, no_tensor_reads, metadata, match):
    with pytest.raises(CheckpointError, match=match):
        load_emo_checkpoint(_rewrite(saved, tmp_path, metadata=metadata))


def test_sd15_file_truncated_file_and_wrong_paths(saved, tmp_path, no_tensor_reads):
    sd15 = save_safetensors_atomic(unet_to_ldm(tiny_unet()), tmp_path / "sd15.safetensors")
    with pytest.raises(CheckpointError, match="plain Stable Diffusion checkpoint.*init-checkpoint"):
        load_emo_checkpoint(sd15)
    data = saved.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_emo_checkpoint(cut)
    with pytest.raises(CheckpointError, match="not found"):
        load_emo_checkpoint(tmp_path / "missing.safetensors")
    ckpt = tmp_path / "emo.ckpt"
    ckpt.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="are .safetensors files"):
        load_emo_checkpoint(ckpt)


def test_truncated_tensor_data_is_a_checkpoint_error(saved, tmp_path):
    # Header intact, data cut: the header check passes, the read must fail cleanly.
    data = saved.read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    cut = tmp_path / "cut_data.safetensors"
    cut.write_bytes(data[: header + 16])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_emo_checkpoint(cut)


def test_nan_weights_are_named_as_nan_not_as_a_truncated_file(saved, tmp_path):
    # A file that reads fine but holds NaN: the advice is the NaN check's ("the file is
    # damaged" + how to rebuild it), not "truncated or corrupt: copy it again".
    tensors = load_file(saved)
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    bad = tmp_path / "nan.safetensors"
    save_file(tensors, bad, metadata=read_safetensors_metadata(saved))
    with pytest.raises(CheckpointError, match="NaN or infinite") as refused:
        load_emo_checkpoint(bad)
    assert "truncated" not in str(refused.value)
    assert name in str(refused.value)
