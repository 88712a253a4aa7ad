"""SD1.5 UNet/VAE loading from single files and diffusers folders; refusal of other families."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from emo_core.errors import CheckpointError
from emo_core.io.conversion import compare_state_dicts, ldm_to_diffusers_unet
from emo_core.io.safe_load import save_safetensors_atomic
from emo_core.io.sd15 import load_sd15_unet, load_sd15_vae, shipped_config
from tests.test_io_ldm_names import (
    TINY_UNET,
    TINY_VAE,
    tiny_unet,
    tiny_vae,
    unet_to_ldm,
    vae_to_ldm,
)


def _assert_same_weights(model, source):
    expected = source.state_dict()
    got = model.state_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key  # exact: the loader only renames


def _single_file(unet, vae):
    """A civit.ai-style file: UNet + VAE + text-encoder tensor + training bookkeeping."""
    tensors = {**unet_to_ldm(unet), **vae_to_ldm(vae)}
    tensors["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = torch.ones(8)
    return tensors


@pytest.fixture(scope="module")
def models():
    return tiny_unet(1), tiny_vae(2)


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_file_checkpoint_loads_exactly(tmp_path, models, suffix):
    unet, vae = models
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        save_safetensors_atomic(_single_file(unet, vae), path)
    else:  # LDM .ckpt files wrap everything in "state_dict"
        torch.save({"state_dict": _single_file(unet, vae), "global_step": 1}, path)
    _assert_same_weights(load_sd15_unet(path, TINY_UNET), unet)
    _assert_same_weights(load_sd15_vae(path, TINY_VAE), vae)


def test_diffusers_folders_and_standalone_vae(tmp_path, models):
    unet, vae = models
    unet.save_pretrained(tmp_path / "pipe" / "unet")
    vae.save_pretrained(tmp_path / "pipe" / "vae")
    _assert_same_weights(load_sd15_unet(tmp_path / "pipe", TINY_UNET), unet)
    _assert_same_weights(load_sd15_unet(tmp_path / "pipe" / "unet", TINY_UNET), unet)
    _assert_same_weights(load_sd15_vae(tmp_path / "pipe", TINY_VAE), vae)
    # vae-ft-mse style standalone LDM VAE file (no first_stage_model. prefix)
    standalone = save_safetensors_atomic(vae_to_ldm(vae, prefix=""), tmp_path / "vae.safetensors")
    _assert_same_weights(load_sd15_vae(standalone, TINY_VAE), vae)
    loaded = load_sd15_unet(tmp_path / "pipe", TINY_UNET, dtype=torch.float16)
    assert next(loaded.parameters()).dtype == torch.float16


def test_legacy_diffusers_vae_attention_names(tmp_path, models):
    _, vae = models
    legacy = {k.replace(".to_q.", ".query.").replace(".to_out.0.", ".proj_attn."): v
              for k, v in vae.state_dict().items()}
    assert any(".query." in k for k in legacy)
    path = save_safetensors_atomic(legacy, tmp_path / "old_vae.safetensors")
    _assert_same_weights(load_sd15_vae(path, TINY_VAE), vae)


def _refused(tmp_path, tensors, match):
    path = save_safetensors_atomic(tensors, tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match=match) as info:
        load_sd15_unet(path, TINY_UNET)
    return str(info.value)


def test_other_families_are_refused_with_what_was_found(tmp_path, models):
    unet, _ = models
    sdxl = {**unet_to_ldm(unet), "conditioner.embedders.0.transformer.x": torch.ones(1)}
    assert "SD1.5" in _refused(tmp_path, sdxl, "SDXL")
    wide = tiny_unet(0, {**TINY_UNET, "cross_attention_dim": 1024})
    assert "expects 32" in _refused(tmp_path, unet_to_ldm(wide), "width 1024 \\(SD2.x\\)")
    inpaint = tiny_unet(0, {**TINY_UNET, "in_channels": 9})
    _refused(tmp_path, unet_to_ldm(inpaint), "9 input channels \\(an inpainting model\\)")
    lora = {"lora_unet_down_blocks_0.lora_down.weight": torch.ones(4, 4)}
    _refused(tmp_path, lora, "LoRA")


def test_structural_mismatch_lists_keys_with_counts(tmp_path):
    other = tiny_unet(0, {**TINY_UNET, "block_out_channels": [32, 64, 64, 96]})
    message = _refused(tmp_path, unet_to_ldm(other), "does not match the model architecture")
    assert "mis-shaped" in message and "(model [64" in message


def test_missing_folder_content_is_explained(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "model.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="pass one of those files directly"):
        load_sd15_unet(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_sd15_vae(tmp_path / "nowhere")


def test_shipped_configs_are_sd15_sized_and_full_size_ldm_names_convert():
    """Parameter counts of the real SD1.5 UNet (859,520,964) and VAE (83,653,863), built on the
    meta device (no memory); the full-size LDM key set maps onto the shipped config exactly."""
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(shipped_config("unet"))
        vae = AutoencoderKL.from_config(shipped_config("vae"))
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863
    assert vae.config.scaling_factor == 0.18215
    ldm = unet_to_ldm(unet)
    # 686 tensors: the key count of the UNet in v1-5-pruned-emaonly
    assert len(ldm) == 686
    converted = ldm_to_diffusers_unet(ldm, shipped_config("unet"))
    assert compare_state_dicts(unet.state_dict(), converted).ok
    assert shipped_config("scheduler")["beta_schedule"] == "scaled_linear"
