"""The MODEL bridge inside a real ComfyUI (in-process, no server): CheckpointLoaderSimple's loader
on a tiny SD1.5 file + ComfyUI's own LoRA loading, then nodes/style_bridge.py onto EMO models.

ComfyUI only recognises a checkpoint as SD1.5 (``comfy.supported_models.SD15``) when the UNet
has 320 base channels and cross-attention width 768, so the "tiny" model here keeps those two
numbers (every level 320 wide, one layer per block: 74 M parameters) - the standard tiny preset
(32 channels, width 64) is not loadable by CheckpointLoaderSimple.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from emo_core.errors import EMOInputError
from emo_core.models.presets import emo_component_configs, unet_config, vae_config
from emo_core.style import apply_style_delta
from tests.comfyui_harness import import_pack_in_process
from tests.test_style_deltas import LORA_LAYERS, make_lora, random_unet, write_sd15_file

# Imports the pack inside a real ComfyUI: runs on every ComfyUI version CI tests.
pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parents[1]


def comfy_sd15_config(cross_attention_dim: int = 768, linear: bool = False) -> dict:
    """Smallest UNet ComfyUI detects as SD15 (or SD2 with 1024 + linear projections)."""
    config = unet_config("tiny")
    config.update(block_out_channels=[320] * 4, cross_attention_dim=cross_attention_dim,
                  attention_head_dim=[8] * 4, layers_per_block=1,
                  use_linear_projection=linear)
    return config


def comfy_emo_models(seed: int = 0, with_vae: bool = False):
    """EMOModels whose UNets have :func:`comfy_sd15_config`'s shapes."""
    from emo_core.models.emo_models import EMOModels

    configs = emo_component_configs("tiny")
    unet = comfy_sd15_config()
    configs["reference_net"]["unet"] = dict(unet)
    configs["backbone"]["unet"] = dict(unet)
    configs["face_locator"]["embedding_channels"] = 320
    configs["context"]["dim"] = 768
    if with_vae:
        configs["vae"] = vae_config("tiny")
    torch.manual_seed(seed)
    return EMOModels.from_configs(configs)


def import_comfy():
    """Import ComfyUI's model code in this process (CPU only) and this pack's bridge module.

    The pack's ``nodes`` package is shadowed by ComfyUI's ``nodes.py``, so the bridge is loaded
    from its file under another name.
    """
    bridge = import_pack_in_process("style_bridge")["style_bridge"]
    import comfy.sd
    import comfy.utils

    return comfy, bridge


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small tensor ops on a shared 2-core machine
    comfy, bridge = import_comfy()
    folder = tmp_path_factory.mktemp("style_bridge")
    config = comfy_sd15_config()
    sd15 = write_sd15_file(folder / "sd15_tiny.safetensors", random_unet(config, 1))
    lora_state, expected = make_lora(config)
    save_file(lora_state, str(folder / "lora.safetensors"))
    sd2_config = comfy_sd15_config(1024, linear=True)
    sd2 = write_sd15_file(folder / "sd2_tiny.safetensors", random_unet(sd2_config, 2))
    yield {"comfy": comfy, "bridge": bridge, "sd15": sd15, "sd2": sd2,
           "lora": folder / "lora.safetensors", "expected": expected,
           "emo": comfy_emo_models()}
    torch.set_num_threads(threads)


def _load(comfy, path):
    model, _clip, _vae, _ = comfy.sd.load_checkpoint_guess_config(str(path))
    return model


def test_lora_through_comfyui_gives_exactly_the_lora_delta(setup):
    comfy, bridge = setup["comfy"], setup["bridge"]
    base = _load(comfy, setup["sd15"])
    assert bridge.describe_model(base) == "SD15"
    lora = comfy.utils.load_torch_file(str(setup["lora"]), safe_load=True)
    styled, _ = comfy.sd.load_lora_for_models(base, None, lora, 0.7, 1.0)  # = LoraLoader
    models = copy.deepcopy(setup["emo"])
    source = bridge.ModelDeltaSource(styled, base, dict(models.backbone.unet.config))
    assert source.style.patched == len(LORA_LAYERS) and source.base.patched == 0
    report = apply_style_delta(models, source, 1.0, 0.5)
    for name, s in (("backbone", 0.7), ("reference_net", 0.35)):
        was = getattr(setup["emo"], name).unet.state_dict()
        now = getattr(models, name).unet.state_dict()
        changed = sorted(k for k in now if not torch.equal(now[k], was[k]))
        assert changed == sorted(LORA_LAYERS)  # nothing else moved: temporal, audio, other SD
        for key, delta in setup["expected"].items():
            # (w + d) - w in fp32 loses ~|w| * 6e-8 (|w| ~ 0.2), so 1e-6 is several ulps of slack
            assert float((now[key] - was[key] - s * delta).abs().max()) < 1e-6
    l2 = 0.7 * float(torch.sqrt(sum(d.double().square().sum()
                                    for d in setup["expected"].values())))
    assert report.components["backbone"].l2 == pytest.approx(l2, rel=1e-5)
    # the ComfyUI MODELs were read, not modified: the base still has no patches baked in
    assert not base.backup and not styled.backup


def test_sd2_model_is_refused_naming_what_was_connected(setup):
    comfy, bridge = setup["comfy"], setup["bridge"]
    sd2 = _load(comfy, setup["sd2"])
    assert bridge.describe_model(sd2) == "SD20"
    with pytest.raises(EMOInputError, match="style_model: a SD20 model was connected.*SD1.5"):
        bridge.ModelDeltaSource(sd2, None, dict(setup["emo"].backbone.unet.config))
    with pytest.raises(EMOInputError, match="expected a MODEL"):
        bridge.check_sd15_model(object(), "base_model")


def test_sd15_style_on_tiny_demo_weights_blames_the_demo_checkpoint(setup):
    """Issue 25: the civit.ai example with the demo EMO weights. The style MODEL is a genuine
    SD1.5 (cross-attention 768) and the EMO weights are the tiny demo ones (width 64): the
    message must name the demo checkpoint as the cause, not ask for an SD1.5 style model."""
    from emo_core.errors import CheckpointError

    comfy, bridge = setup["comfy"], setup["bridge"]
    sd15 = _load(comfy, setup["sd15"])
    with pytest.raises(CheckpointError) as refused:
        bridge.ModelDeltaSource(sd15, None, dict(unet_config("tiny")))
    message = str(refused.value)
    assert message.startswith("style_model is a fine Stable Diffusion 1.5 model"), message
    assert "tiny demo weights" in message and "Load EMO Models" in message, message
    assert "use an SD1.5 checkpoint" not in message, message
    # The same style against SD1.5-sized EMO weights passes this check (and is applied above).
    bridge.ModelDeltaSource(sd15, None, dict(setup["emo"].backbone.unet.config))
