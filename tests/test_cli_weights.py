"""CLI ``demo-weights`` and ``init-checkpoint``: run as subprocesses, outputs load back."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from emo_core.cli.main import main
from emo_core.io.emo_checkpoint import load_emo_checkpoint
from emo_core.io.safe_load import read_safetensors_metadata, save_safetensors_atomic
from tests.test_io_animatediff import fake_animatediff, make_backbone
from tests.test_io_ldm_names import tiny_unet, tiny_vae, unet_to_ldm, vae_to_ldm

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emo_core", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _content(path: Path) -> tuple[dict, dict]:
    return load_file(str(path)), read_safetensors_metadata(path)


def test_demo_weights_cli_writes_loadable_deterministic_bundle(tmp_path):
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from emo_core.io.demo_weights import write_demo_weights

    out = tmp_path / "demo"
    result = _cli("demo-weights", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "noise" in result.stdout and str(out / "emo.safetensors") in result.stdout
    models = load_emo_checkpoint(out)
    assert models.vae is not None
    # The zero-initialised branch outputs were re-drawn: no all-zero parameter is left.
    assert all(p.any() for p in models.parameters())
    wav2vec = Wav2Vec2Model.from_pretrained(out / "wav2vec2")
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(out / "wav2vec2")
    assert extractor.sampling_rate == 16000 and extractor.do_normalize
    with torch.no_grad():
        hidden = wav2vec(torch.randn(1, 16000)).last_hidden_state
    assert hidden.shape == (1, 49, wav2vec.config.hidden_size)  # 50 Hz features for 1 s
    # Same seed in-process, written over the CLI's bundle -> identical content (the CLI and the
    # function agree, and an existing bundle is replaced in place); new seed -> different.
    # emo.safetensors is compared by content: safetensors writes its metadata keys in hash-map
    # order, so the header bytes of two identical checkpoints can differ.
    names = ("wav2vec2/model.safetensors", "wav2vec2/config.json")
    before = {name: _digest(out / name) for name in names}
    first = _content(out / "emo.safetensors")
    write_demo_weights(out, seed=0)
    assert {name: _digest(out / name) for name in names} == before
    again = _content(out / "emo.safetensors")
    assert again[1] == first[1] and again[0].keys() == first[0].keys()
    assert all(torch.equal(again[0][k], v) for k, v in first[0].items())
    write_demo_weights(tmp_path / "other", seed=1)
    other = _content(tmp_path / "other" / "emo.safetensors")[0]
    assert not all(torch.equal(other[k], v) for k, v in first[0].items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "other"]  # no temp folders


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A tiny SD1.5 single file (LDM names, VAE inside) and an AnimateDiff .ckpt."""
    from emo_core.models.presets import unet_config, vae_config

    folder = tmp_path_factory.mktemp("sources")
    unet = tiny_unet(5, unet_config("tiny"))
    vae = tiny_vae(6, vae_config("tiny"))
    sd15 = save_safetensors_atomic({**unet_to_ldm(unet), **vae_to_ldm(vae)},
                                   folder / "tiny_sd15.safetensors")
    motion = fake_animatediff(make_backbone(), seed=7)
    torch.save(motion, folder / "mm_tiny.ckpt")
    return {"unet": unet, "vae": vae, "motion": motion, "sd15": sd15,
            "mm": folder / "mm_tiny.ckpt"}


def test_demo_weights_into_comfyui_models_layout(tmp_path):
    """--comfyui-models puts the files where Load EMO Models looks: models/emo/emo.safetensors and
    models/wav2vec2/wav2vec2/ (a second run replaces them; no staging folder is left)."""
    models_dir = tmp_path / "ComfyUI" / "models"
    for _ in range(2):
        result = _cli("demo-weights", "--comfyui-models", str(models_dir))
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in models_dir.iterdir()) == ["emo", "wav2vec2"]
    assert [p.name for p in (models_dir / "emo").iterdir()] == ["emo.safetensors"]
    assert (models_dir / "wav2vec2" / "wav2vec2" / "config.json").is_file()
    assert load_emo_checkpoint(models_dir / "emo" / "emo.safetensors").vae is not None
    from emo_core.io.safe_load import umask_mode

    files = {n: m for n, m in _modes(models_dir).items() if (models_dir / n).is_file()}
    assert set(files.values()) == {umask_mode(0o666)}, files  # the umask, as for videos


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in sorted(root.rglob("*"))}


def test_demo_weights_follow_the_umask(tmp_path):
    """Issue 13 item 7: weights were 0600 (mkstemp, safetensors 0.8) and a new bundle folder
    0700 (mkdtemp). 027 (not the usual 022) shows the mode comes from the umask, not a constant;
    the --comfyui-models test above checks the process's own umask."""
    umask = 0o027
    out = tmp_path / "bundle"
    result = subprocess.run([sys.executable, "-m", "emo_core", "demo-weights", "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300, umask=umask)
    assert result.returncode == 0, result.stderr
    modes = _modes(tmp_path)
    assert modes["bundle"] == 0o777 & ~umask and modes["bundle/wav2vec2"] == 0o777 & ~umask
    files = {name: mode for name, mode in modes.items() if (tmp_path / name).is_file()}
    assert "bundle/emo.safetensors" in files and "bundle/wav2vec2/config.json" in files
    assert set(files.values()) == {0o666 & ~umask}, {n: oct(m) for n, m in files.items()}


def test_init_checkpoint_cli_copies_every_source_tensor(sources, tmp_path):
    out = tmp_path / "emo_init.safetensors"
    result = _cli("init-checkpoint", "--sd15", str(sources["sd15"]), "--motion-module",
                  str(sources["mm"]), "--out", str(out), "--preset", "tiny")
    assert result.returncode == 0, result.stderr
    assert "VAE included" in result.stdout
    models = load_emo_checkpoint(out)
    state = models.state_dict()
    for key, value in sources["unet"].state_dict().items():
        # Exact copies: the loader and from_unet2d only rename and copy.
        assert torch.equal(state["backbone.unet." + key], value), key
        if not key.startswith(("conv_out.", "conv_norm_out.")):
            assert torch.equal(state["reference_net.unet." + key], value), key
    for key, value in sources["motion"].items():
        assert torch.equal(state["backbone.unet." + key], value), key
    for key, value in sources["vae"].state_dict().items():
        assert torch.equal(state["vae." + key], value), key
    # New branches start at zero: audio/speed attention outputs, face locator output, context.
    zero = [k for k in state if k.endswith("to_out.0.weight")
            and (".audio_modules." in k or ".attention_blocks.2." in k)]
    assert zero and not any(state[k].any() for k in zero)
    assert not state["context"].any()
    face_out = [k for k in state if k.startswith("face_locator.") and ".conv_out." in k]
    assert face_out and not any(state[k].any() for k in face_out)


def test_init_checkpoint_bad_input_exits_2_and_writes_nothing(sources, tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    base = ["init-checkpoint", "--motion-module", str(sources["mm"]), "--preset", "tiny"]
    sdxl = save_safetensors_atomic(
        {**unet_to_ldm(sources["unet"]), "conditioner.embedders.0.x": torch.ones(1)},
        tmp_path / "sdxl.safetensors")
    assert main([*base, "--sd15", str(sdxl), "--out", str(out)]) == 2
    assert "SDXL" in capsys.readouterr().err
    assert main([*base, "--sd15", str(tmp_path / "nope.ckpt"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*base, "--sd15", str(sources["sd15"]), "--out", str(tmp_path / "x.ckpt")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["sdxl.safetensors"]
    out.write_bytes(b"keep")
    assert main([*base, "--sd15", str(sources["sd15"]), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep"


def test_init_checkpoint_from_diffusers_folder_fp16(sources, tmp_path, capsys):
    from safetensors import safe_open

    pipe = tmp_path / "pipe"
    sources["unet"].save_pretrained(pipe / "unet")
    sources["vae"].save_pretrained(pipe / "vae")
    out = tmp_path / "emo_fp16.safetensors"
    assert main(["init-checkpoint", "--sd15", str(pipe), "--motion-module", str(sources["mm"]),
                 "--out", str(out), "--preset", "tiny", "--dtype", "fp16"]) == 0
    assert "VAE included" in capsys.readouterr().out
    with safe_open(str(out), framework="pt") as handle:
        key = "vae.decoder.conv_out.weight"
        stored = handle.get_tensor(key)
    assert stored.dtype == torch.float16
    assert torch.equal(stored, sources["vae"].state_dict()["decoder.conv_out.weight"].half())
    loaded = load_emo_checkpoint(out, dtype=torch.float16)
    assert loaded.backbone.config.motion_max_frames == 32
