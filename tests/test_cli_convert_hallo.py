"""``python -m emo_core convert-hallo``: a real Hallo pretrained_models/ layout in, an EMO
checkpoint out; other models' net.pth, truncated and incomplete files refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from emo_core.cli.main import main
from tests.fixture_sets import HALLO_FIXTURE

FIXTURE = HALLO_FIXTURE
pytestmark = pytest.mark.skipif(not (FIXTURE / "outputs.safetensors").is_file(),
                                reason=f"Hallo golden fixture folder {FIXTURE} is absent")
PRETRAINED = FIXTURE / "pretrained_models"
UNET_CONFIG = "stable-diffusion-v1-5/unet/config.json"
WAV2VEC_CONFIG = "wav2vec/wav2vec2-base-960h/config.json"


@pytest.fixture(scope="module")
def net():
    return torch.load(PRETRAINED / "hallo/net.pth", map_location="cpu", weights_only=True)


def _layout(root: Path, state: dict | None = None, raw: bytes | None = None) -> Path:
    """A pretrained_models/ folder with the fixture's configs and the given net.pth."""
    for rel in (UNET_CONFIG, WAV2VEC_CONFIG):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PRETRAINED / rel, root / rel)
    (root / "hallo").mkdir(exist_ok=True)
    if raw is not None:
        (root / "hallo/net.pth").write_bytes(raw)
    else:
        torch.save(state, root / "hallo/net.pth")
    return root


def test_convert_hallo_writes_a_loadable_hallo_checkpoint(tmp_path, capsys):
    from emo_core.io.emo_checkpoint import load_emo_checkpoint

    out = tmp_path / "hallo.safetensors"
    code = main(["convert-hallo", "--pretrained-models", str(PRETRAINED),
                 "--unet-kwargs", str(FIXTURE / "hallo_unet_kwargs.json"), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert str(out) in capsys.readouterr().out
    models = load_emo_checkpoint(out)
    assert models.backbone.config.variant == "hallo"
    assert models.backbone.config.hallo["motion_mode"] == "train"
    assert models.sampling["scheduler"]["prediction_type"] == "v_prediction"
    assert models.prediction_type == "v_prediction" and models.vae is not None


def test_default_unet_kwargs_are_hallos_release_and_mismatch_is_reported(tmp_path, capsys):
    """Without --unet-kwargs the SD1.5 release values apply (audio_attention_dim 768): the
    tiny fixture's 32-wide audio tokens are refused, nothing written; with the right audio
    width but other wrong settings the tensors are reported key by key."""
    out = tmp_path / "x.safetensors"
    code = main(["convert-hallo", "--pretrained-models", str(PRETRAINED), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "audio_attention_dim = 768" in err and "--unet-kwargs" in err
    kwargs = json.loads((FIXTURE / "hallo_unet_kwargs.json").read_text())
    kwargs["motion_module_kwargs"]["temporal_position_encoding_max_len"] = 24
    path = tmp_path / "kw.json"
    path.write_text(json.dumps(kwargs))
    code = main(["convert-hallo", "--pretrained-models", str(PRETRAINED), "--unet-kwargs",
                 str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "mis-shaped" in err and "pos_encoder.pe" in err


@pytest.mark.parametrize("name, edit, expected", [
    ("animateanyone", lambda sd: {**{k: v for k, v in sd.items() if ".audio_modules." not in k
                                     and not k.startswith(("face_locator.", "imageproj.",
                                                           "audioproj."))},
                                  "pose_guider.conv_in.weight": torch.zeros(1)},
     "AnimateAnyone"),
    ("echomimic", lambda sd: {k.removeprefix("denoising_unet."): v for k, v in sd.items()
                              if k.startswith("denoising_unet.")}, "EchoMimic"),
    ("vexpress", lambda sd: {"reference_net.conv_in.weight": torch.zeros(1),
                             "v_kps_guider.conv_in.weight": torch.zeros(1),
                             "audio_projection.proj.weight": torch.zeros(1)}, "V-Express"),
    ("no_imageproj", lambda sd: {k: v for k, v in sd.items() if not k.startswith("imageproj.")},
     "lacks imageproj."),
])
def test_other_models_and_incomplete_files_are_refused(tmp_path, capsys, net, name, edit,
                                                       expected):
    root = _layout(tmp_path / name, edit(net))
    out = tmp_path / "x.safetensors"
    code = main(["convert-hallo", "--pretrained-models", str(root), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert expected in err and "net.pth" in err


def test_truncated_net_pth_is_refused(tmp_path, capsys):
    data = (PRETRAINED / "hallo/net.pth").read_bytes()
    root = _layout(tmp_path / "cut", raw=data[: len(data) // 2])
    code = main(["convert-hallo", "--pretrained-models", str(root),
                 "--out", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "net.pth" in err and ("truncated" in err or "corrupt" in err)


def test_missing_folder_names_the_layout(tmp_path, capsys):
    code = main(["convert-hallo", "--pretrained-models", str(tmp_path),
                 "--out", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "hallo/net.pth" in err and "fudan-generative-ai/hallo" in err


def test_bad_unet_kwargs_are_refused(tmp_path, capsys):
    kwargs = json.loads((FIXTURE / "hallo_unet_kwargs.json").read_text())
    kwargs["unet_use_temporal_attention"] = True
    path = tmp_path / "kw.json"
    path.write_text(json.dumps(kwargs))
    code = main(["convert-hallo", "--pretrained-models", str(PRETRAINED), "--unet-kwargs",
                 str(path), "--out", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "unet_use_temporal_attention" in err


def test_audio_module_widths_follow_net_pth_by_name():
    """Hallo's audio modules can be narrower than their site (SD1.5: heads x (block input //
    heads)); net.pth lists up blocks before the mid block, so widths must go by name. Names and
    widths come from the fixture's net.pth; the config's blocks after the first are doubled, so
    sites are wider than the fixture's modules."""
    from emo_core.io.hallo import hallo_configs
    from emo_core.models.backbone import EMOBackbone

    net = {k: tuple(v.shape) for k, v in torch.load(
        PRETRAINED / "hallo/net.pth", map_location="cpu", weights_only=True).items()}
    unet = json.loads((PRETRAINED / UNET_CONFIG).read_text())
    first, *rest = unet["block_out_channels"]
    unet["block_out_channels"] = [first, *(2 * c for c in rest)]
    prefix, suffix = "denoising_unet.", ".proj_in.weight"
    modules = [k[len(prefix):-len(suffix)] for k in net
               if k.startswith(prefix) and ".audio_modules." in k and k.endswith(suffix)]

    def in_block(block):
        return [m for m in modules if m.startswith(block + ".")]

    chosen = [in_block("down_blocks.1")[0], in_block("up_blocks.1")[-1],
              in_block("up_blocks.2")[0], in_block("mid_block")[0]]
    assert modules.index(chosen[1]) < modules.index(chosen[3])  # an up block before the mid
    widths = {}
    for index, name in enumerate(chosen):  # alternately the fixture's width and twice it
        shape = net[f"{prefix}{name}{suffix}"]
        widths[name] = shape[0] * (1 + index % 2)
        net[f"{prefix}{name}{suffix}"] = (widths[name], *shape[1:])
    kwargs = json.loads((FIXTURE / "hallo_unet_kwargs.json").read_text())
    wav2vec = json.loads((PRETRAINED / WAV2VEC_CONFIG).read_text())
    config = hallo_configs(net, unet, kwargs, wav2vec)["backbone"]
    with torch.device("meta"):
        backbone = EMOBackbone.from_config(config)
    for name, width in widths.items():
        module = backbone.unet.get_submodule(name)
        assert module.proj_in.weight.shape[:2] == (width, module.norm.num_channels)
    # A module left as the fixture has it keeps its width, though its site is now wider.
    kept = next(m for m in in_block("down_blocks.1") + in_block("up_blocks.2") if m not in widths)
    module = backbone.unet.get_submodule(kept)
    width = net[f"{prefix}{kept}{suffix}"][0]
    assert module.proj_in.out_channels == width < module.norm.num_channels
