"""``python -m emo_core convert-echomimic`` on EchoMimic's real ``pretrained_weights/`` layout
(the golden fixture's): every tensor used once, other layouts refused by name."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.echomimic_fixture import echomimic_fixture, pretrained_weights, skip_without_fixture

pytestmark = skip_without_fixture


def kwargs_file():
    return echomimic_fixture() / "unet_additional_kwargs.json"


def copy_layout(root):
    """A writable copy of the fixture's pretrained_weights/ (symlinks to the read-only files)."""
    src = pretrained_weights()
    for path in src.rglob("*"):
        if path.is_file():
            target = root / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    return root


@pytest.mark.parametrize("acc", [False, True])
def test_every_tensor_used_once(acc, one_torch_thread):
    from emo_core.cli.cmd_convert_echomimic import check_layout, read_and_convert
    from emo_core.io.safe_load import load_state_dict

    variant = "acc" if acc else "normal"
    paths = check_layout(pretrained_weights(), variant)
    tensors, configs = read_and_convert(paths, variant, json.loads(kwargs_file().read_text()))
    sources = {name: load_state_dict(paths[name]) for name in
               ("reference", "denoising", "motion", "face_locator")}
    vae = load_state_dict(paths["vae_config"].parent / "diffusion_pytorch_model.safetensors")
    whisper = torch.load(paths["whisper"], weights_only=True)["model_state_dict"]
    dropped = [k for k in whisper if k.startswith(("decoder.", "encoder.ln_post."))]
    # The fixture's denoising/motion split is disjoint, so the total is a plain sum.
    total = sum(len(s) for s in sources.values()) + len(vae) + len(whisper) - len(dropped)
    assert len(tensors) == total
    for key, value in sources["face_locator"].items():
        assert torch.equal(tensors["face_locator.embedding." + key], value)
    for key, value in sources["motion"].items():
        assert torch.equal(tensors["backbone.unet." + key], value)
    assert configs["backbone"]["variant"] == "echomimic" and configs["sampling"]["variant"] == variant
    assert (configs["sampling"]["steps"], configs["sampling"]["guidance_scale"]) == (
        (6, 1.0) if acc else (30, 2.5))


def test_denoising_unet_wins_over_motion_module_like_echomimic():
    from emo_core.io.echomimic import merge_denoiser

    motion = {"down_blocks.0.motion_modules.0.x": torch.zeros(1)}
    merged, overridden = merge_denoiser({"down_blocks.0.motion_modules.0.x": torch.ones(1)},
                                        motion)
    assert overridden == ["down_blocks.0.motion_modules.0.x"]
    assert merged["down_blocks.0.motion_modules.0.x"].item() == 1.0


def test_cli_writes_a_loadable_checkpoint(tmp_path, capsys, one_torch_thread):
    from emo_core.cli.main import main
    from emo_core.io.echomimic_checkpoint import load_echomimic_checkpoint

    out = tmp_path / "echo_acc.safetensors"
    code = main(["convert-echomimic", "--pretrained-weights", str(pretrained_weights()), "--acc",
                 "--unet-kwargs", str(kwargs_file()), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    models = load_echomimic_checkpoint(out)
    assert models.variant == "acc" and models.backbone.num_sites == 21
    assert [p.name for p in tmp_path.iterdir()] == ["echo_acc.safetensors"]


def test_default_unet_kwargs_are_echomimics_release(tmp_path, capsys):
    """Without --unet-kwargs the release's 8 motion heads are assumed: the tiny fixture (2 heads,
    32 channels) still converts (8 divides 32), so the check is that the config says 8."""
    from emo_core.cli.cmd_convert_echomimic import check_layout, read_and_convert

    _, configs = read_and_convert(check_layout(pretrained_weights(), "normal"), "normal", None)
    assert configs["backbone"]["motion_num_attention_heads"] == 8
    assert configs["backbone"]["unet"]["cross_attention_dim"] == 384


@pytest.mark.parametrize(("marker", "words"), [
    ("hallo/net.pth", "Hallo"), ("pose_guider.pth", "AnimateAnyone"),
    ("v-express/v_kps_guider.bin", "V-Express"), ("pose_encoder.pth", "EchoMimic v2")])
def test_other_layouts_are_refused_by_name(tmp_path, marker, words):
    from emo_core.cli.cmd_convert_echomimic import check_layout
    from emo_core.errors import EMOInputError

    (tmp_path / marker).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.zeros(1)}, tmp_path / marker)
    with pytest.raises(EMOInputError, match=words):
        check_layout(tmp_path, "normal")


def test_acc_missing_points_at_the_normal_pair(tmp_path):
    from emo_core.cli.cmd_convert_echomimic import check_layout
    from emo_core.errors import EMOInputError

    root = copy_layout(tmp_path / "pw")
    for name in ("denoising_unet_acc.pth", "motion_module_acc.pth"):
        (root / name).unlink()
    with pytest.raises(EMOInputError, match="drop --acc"):
        check_layout(root, "acc")


def test_incomplete_denoiser_is_refused(tmp_path):
    from emo_core.cli.cmd_convert_echomimic import check_layout, read_and_convert
    from emo_core.errors import CheckpointError

    root = copy_layout(tmp_path / "pw")
    state = torch.load(pretrained_weights() / "denoising_unet.pth", weights_only=True)
    state.pop("conv_out.weight")
    (root / "denoising_unet.pth").unlink()
    torch.save(state, root / "denoising_unet.pth")
    with pytest.raises(CheckpointError, match="conv_out.weight"):
        read_and_convert(check_layout(root, "normal"), "normal",
                         json.loads(kwargs_file().read_text()))


def test_out_inside_the_input_folder_is_refused(tmp_path):
    from emo_core.cli.cmd_convert_echomimic import convert_echomimic
    from emo_core.errors import EMOInputError

    root = copy_layout(tmp_path / "pw")
    with pytest.raises(EMOInputError, match="inside --pretrained-weights"):
        convert_echomimic(root, root / "out.safetensors")
    assert not (root / "out.safetensors").exists()
    shutil.rmtree(root)
