"""``convert-hallo`` on Hallo2's download: the checkpoint records which inference it needs.

Hallo2's ``net.pth`` has Hallo's layout, so only the folder name (``hallo2/net.pth``) or
``--hallo2`` can say which one it is; a wrong guess would run Hallo's loop on Hallo2's weights
(unmasked motion frames, one wav2vec pass) without any error, so each case is pinned here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emo_core.cli.main import main
from tests.hallo2_fixture import hallo2_fixture

FIXTURE = hallo2_fixture()
pytestmark = pytest.mark.skipif(not (FIXTURE / "outputs.safetensors").is_file(),
                                reason=f"Hallo2 golden fixture folder {FIXTURE} is absent")
PRETRAINED = FIXTURE / "pretrained_models"
CONFIGS = ("stable-diffusion-v1-5/unet/config.json", "wav2vec/wav2vec2-base-960h/config.json")


def _layout(root: Path, *net_folders: str) -> Path:
    """A pretrained_models/ folder with the fixture's configs and its net.pth under each of
    ``net_folders`` (no VAE: not needed to record the variant)."""
    for rel in CONFIGS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PRETRAINED / rel, root / rel)
    for folder in net_folders:
        (root / folder).mkdir(parents=True)
        shutil.copy(PRETRAINED / "hallo2/net.pth", root / folder / "net.pth")
    return root


def _convert(root: Path, out: Path, *extra: str) -> int:
    return main(["convert-hallo", "--pretrained-models", str(root), "--unet-kwargs",
                 str(FIXTURE / "hallo_unet_kwargs.json"), "--out", str(out), *extra])


def _variant(out: Path) -> str:
    from emo_core.io.emo_checkpoint import read_emo_configs

    return read_emo_configs(out)["sampling"]["variant"]


@pytest.mark.parametrize("folders, flag, variant, note", [
    (("hallo2",), (), "hallo2", False),  # Hallo2's download: the folder says it
    (("hallo",), ("--hallo2",), "hallo2", False),  # Hallo2 weights saved as hallo/net.pth
    (("hallo",), (), "hallo", False),  # Hallo's download, as before
    (("hallo", "hallo2"), (), "hallo", True),  # both: Hallo's, with a note naming --hallo2
    (("hallo", "hallo2"), ("--hallo2",), "hallo2", False),
])
def test_the_variant_follows_the_folder_or_the_flag(tmp_path, capsys, folders, flag, variant,
                                                   note):
    out = tmp_path / "x.safetensors"
    assert _convert(_layout(tmp_path / "pm", *folders), out, *flag) == 0
    printed = capsys.readouterr().out
    assert _variant(out) == variant
    assert f"({'Hallo2' if variant == 'hallo2' else 'Hallo'} variant)" in printed
    assert ("--hallo2" in printed) == note


def test_hallo2_flag_without_any_net_pth_names_both_places(tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    assert _convert(_layout(tmp_path / "pm"), out, "--hallo2") == 2
    err = capsys.readouterr().err
    assert "hallo2/net.pth" in err and "hallo/net.pth" in err and not out.exists()
    assert "fudan-generative-ai/hallo2" in err  # the hint is for Hallo2's download


def test_hallo2_checkpoint_keeps_hallos_networks_and_defaults(tmp_path):
    """Same tensors and the same Backbone config whichever variant is recorded: only the
    sampling config differs, by Hallo2's three additions."""
    from emo_core.io.emo_checkpoint import read_emo_configs

    hallo, hallo2 = tmp_path / "h.safetensors", tmp_path / "h2.safetensors"
    root = _layout(tmp_path / "pm", "hallo")
    assert _convert(root, hallo) == 0 and _convert(root, hallo2, "--hallo2") == 0
    one, two = read_emo_configs(hallo), read_emo_configs(hallo2)
    assert {k: v for k, v in one.items() if k != "sampling"} == \
        {k: v for k, v in two.items() if k != "sampling"}
    added = {k: v for k, v in two["sampling"].items() if one["sampling"].get(k) != v}
    assert added == {"variant": "hallo2", "motion_mask": {"rate": 0.25, "keep_face": True},
                     "audio_segment_seconds": 60}
    assert json.loads(json.dumps(two["sampling"])) == two["sampling"]
