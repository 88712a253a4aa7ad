"""civit.ai styles as weight deltas: tiny SD1.5-layout checkpoints (LDM names, safetensors) and a
tiny kohya LoRA (real key names) applied to tiny EMO models, checked tensor by tensor.

Helpers here are imported by the other test_style_* files.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from emo_core.cli.style_args import add_style_arguments, apply_style_from_args, parse_lora_spec
from emo_core.errors import CheckpointError, EMOInputError
from emo_core.models.presets import build_emo_models, unet_config
from emo_core.style import CheckpointDeltaSource, apply_style_delta
from emo_core.style.spatial import spatial_shapes
from tests.test_io_ldm_names import unet_to_ldm

# Layers the tiny LoRA adapts: a linear attention weight, a 1x1 conv, a 3x3 conv (LoCon),
# a cross-attention key, and the time embedding (all exist in SD1.5 under these names).
LORA_LAYERS = (
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
    "down_blocks.1.attentions.0.proj_in.weight",
    "up_blocks.1.resnets.1.conv1.weight",
    "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
    "time_embedding.linear_1.weight",
)
RANK, ALPHA = 4, 2.0


def random_unet(config: dict, seed: int) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(config)
    with torch.no_grad():
        for param in unet.parameters():  # diffusers zero-inits some outputs; make all distinct
            param.normal_(0.0, 0.05)
    return unet


def write_sd15_file(path, unet: UNet2DConditionModel, extra: dict | None = None):
    """Single-file SD1.5 layout: ``model.diffusion_model.*`` LDM names, safetensors."""
    tensors = {k: v.contiguous() for k, v in unet_to_ldm(unet).items()}
    tensors.update(extra or {})
    save_file(tensors, str(path))
    return path


def kohya_name(diffusers_weight_key: str, style: str) -> str:
    """kohya module name in diffusers style or LDM style (``lora_unet_input_blocks_...``)."""
    module = diffusers_weight_key.removesuffix(".weight")
    if style == "ldm":
        from emo_core.style.ldm_keys import diffusers_to_ldm_names

        config = unet_config("tiny")
        names = diffusers_to_ldm_names(spatial_shapes(config), config)
        module = names[diffusers_weight_key].removesuffix(".weight")
    return "lora_unet_" + module.replace(".", "_")


def make_lora(config: dict, seed: int = 7, style: str = "diffusers"):
    """``(kohya state dict, {diffusers key: expected delta at weight 1})``; expected deltas are
    computed here from the formula delta = alpha / rank * up @ down, independently of lora.py."""
    shapes = spatial_shapes(config)
    gen = torch.Generator().manual_seed(seed)
    state, expected = {}, {}
    for key in LORA_LAYERS:
        shape = shapes[key]
        out_dim, in_dim = shape[0], shape[1]
        kernel = shape[2:] if len(shape) == 4 else ()
        down = torch.randn(RANK, in_dim, *kernel, generator=gen) * 0.1
        up = torch.randn(out_dim, RANK, *((1, 1) if kernel else ()), generator=gen) * 0.1
        name = kohya_name(key, style)
        state[f"{name}.lora_down.weight"] = down
        state[f"{name}.lora_up.weight"] = up
        state[f"{name}.alpha"] = torch.tensor(ALPHA)
        expected[key] = (ALPHA / RANK) * (up.flatten(1) @ down.flatten(1)).reshape(shape)
    # A text-encoder layer: must be ignored (EMO has no text conditioning).
    state["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"] = \
        torch.randn(RANK, 768, generator=gen)
    state["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"] = \
        torch.randn(768, RANK, generator=gen)
    return state, expected


@pytest.fixture(scope="module")
def tiny():
    """Tiny EMO models, base/style SD1.5-layout files and a kohya LoRA file."""
    # Thousands of tiny tensor ops: one thread avoids thread-pool thrash on the shared 2-core box.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = unet_config("tiny")
    yield {"config": config, "emo": build_emo_models("tiny", seed=0, with_vae=False),
           "base": random_unet(config, 1), "style": random_unet(config, 2)}
    torch.set_num_threads(threads)


@pytest.fixture
def files(tiny, tmp_path):
    base = write_sd15_file(tmp_path / "sd15_base.safetensors", tiny["base"])
    style = write_sd15_file(tmp_path / "civitai_style.safetensors", tiny["style"])
    lora_state, lora_expected = make_lora(tiny["config"])
    lora = tmp_path / "kohya_lora.safetensors"
    save_file(lora_state, str(lora))
    return {"base": base, "style": style, "lora": lora, "lora_expected": lora_expected}


def fresh_copy(models):
    import copy

    return copy.deepcopy(models)


def expected_weights(tiny, component, s, lora_expected=None, lora_weight=0.0):
    """``emo + s * ((style + w * lora) - base)`` per spatial key, computed in fp32."""
    unet = getattr(tiny["emo"], component).unet
    emo, style, base = unet.state_dict(), tiny["style"].state_dict(), tiny["base"].state_dict()
    out = {}
    for key in spatial_shapes(tiny["config"]):
        if key not in emo:
            continue
        delta = style[key] - base[key]
        if lora_expected and key in lora_expected:
            delta = delta + lora_weight * lora_expected[key]
        out[key] = emo[key] + s * delta
    return out


def max_diff(unet, expected) -> float:
    state = unet.state_dict()
    return max(float((state[k] - v).abs().max()) for k, v in expected.items())


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0])
def test_weights_equal_emo_plus_strength_times_style_minus_base(tiny, files, strength):
    models = fresh_copy(tiny["emo"])
    before = {k: v.clone() for k, v in models.state_dict().items()}
    source = CheckpointDeltaSource(tiny["config"], style=files["style"], base=files["base"],
                                   loras=[(files["lora"], 0.8)])
    report = apply_style_delta(models, source, strength, strength)
    for component in ("backbone", "reference_net"):
        expected = expected_weights(tiny, component, strength, files["lora_expected"], 0.8)
        # fp32: emo + s*d is one rounding of values ~0.1, so agreement within 1e-6 is exact
        # up to float ordering; a wrong key, sign or missing LoRA term is >= 1e-3 off.
        assert max_diff(getattr(models, component).unet, expected) < 1e-6
    spatial = set(spatial_shapes(tiny["config"]))
    after = models.state_dict()
    untouched = [k for k in after if k.partition(".")[0] not in ("backbone", "reference_net")
                 or k.split(".", 2)[-1] not in spatial]
    assert any(".motion_modules." in k for k in untouched)
    assert any(".audio_modules." in k for k in untouched)
    assert all(torch.equal(after[k], before[k]) for k in untouched)  # bit-identical
    if strength == 0.0:
        assert all(torch.equal(after[k], before[k]) for k in after)
        assert report.components == {}
    else:
        backbone = report.components["backbone"]
        assert backbone.changed == len(spatial)  # every SD1.5 tensor of the Backbone
        # ReferenceNet has no conv_norm_out / conv_out: reported, not an error.
        assert sorted(report.components["reference_net"].missing) == [
            "conv_norm_out.bias", "conv_norm_out.weight", "conv_out.bias", "conv_out.weight"]


def test_lora_alone_adds_exactly_the_lora_delta_in_both_key_styles(tiny, tmp_path):
    results = []
    for style in ("diffusers", "ldm"):
        state, expected = make_lora(tiny["config"], style=style)
        path = tmp_path / f"lora_{style}.safetensors"
        save_file(state, str(path))
        models = fresh_copy(tiny["emo"])
        report = apply_style_delta(
            models, CheckpointDeltaSource(tiny["config"], loras=[(path, 0.5)]), 1.0, 0.25)
        emo = tiny["emo"]
        for component, s in (("backbone", 0.5), ("reference_net", 0.125)):
            now, was = getattr(models, component).unet.state_dict(), \
                getattr(emo, component).unet.state_dict()
            for key, delta in expected.items():
                assert float((now[key] - (was[key] + s * delta)).abs().max()) < 1e-6
            changed = [k for k in now if not torch.equal(now[k], was[k])]
            assert sorted(changed) == sorted(expected)
        assert report.components["backbone"].changed == len(LORA_LAYERS)
        results.append(report.components["backbone"].l2)
    # L2 of the applied delta, computed independently from the expected tensors
    l2 = 0.5 * float(torch.sqrt(sum(d.double().square().sum() for d in expected.values())))
    assert results[0] == pytest.approx(l2, rel=1e-6) and results[1] == pytest.approx(l2, rel=1e-6)


def test_peft_and_comfyui_key_styles_resolve_to_the_same_layers(tiny):
    from emo_core.style.lora import parse_lora

    state, expected = make_lora(tiny["config"])
    peft, comfy = {}, {}
    from emo_core.style.ldm_keys import diffusers_to_ldm_names

    ldm = diffusers_to_ldm_names(spatial_shapes(tiny["config"]), tiny["config"])
    for key in LORA_LAYERS:
        name = kohya_name(key, "diffusers")
        module = key.removesuffix(".weight")
        # peft has no alpha: bake alpha/rank into B so the product is the same.
        peft[f"unet.{module}.lora_A.weight"] = state[f"{name}.lora_down.weight"]
        peft[f"unet.{module}.lora_B.weight"] = state[f"{name}.lora_up.weight"] * ALPHA / RANK
        cname = "diffusion_model." + ldm[key].removesuffix(".weight")
        comfy[f"{cname}.lora_down.weight"] = state[f"{name}.lora_down.weight"]
        comfy[f"{cname}.lora_up.weight"] = state[f"{name}.lora_up.weight"]
        comfy[f"{cname}.alpha"] = torch.tensor(ALPHA)
    shapes = spatial_shapes(tiny["config"])
    for variant in (peft, comfy):
        lora = parse_lora(variant, shapes, tiny["config"])
        assert sorted(lora.layers) == sorted(expected)
        for key, delta in expected.items():
            assert torch.allclose(lora.delta(key, shapes[key]), delta, atol=1e-7)


def test_style_without_base_blends_towards_the_style(tiny, files):
    models = fresh_copy(tiny["emo"])
    apply_style_delta(models, CheckpointDeltaSource(tiny["config"], style=files["style"]),
                      0.5, 1.0)
    style = tiny["style"].state_dict()
    was, now = tiny["emo"].backbone.unet.state_dict(), models.backbone.unet.state_dict()
    key = "down_blocks.0.resnets.0.conv1.weight"
    assert torch.allclose(now[key], was[key] + 0.5 * (style[key] - was[key]), atol=1e-6)
    ref = models.reference_net.unet.state_dict()
    assert torch.allclose(ref[key], style[key], atol=1e-6)  # strength 1 = the style itself


def _refused(tiny, tmp_path, name, tensors, match):
    path = tmp_path / name
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=match):
        CheckpointDeltaSource(tiny["config"], style=path)


def test_other_families_are_refused_naming_what_was_connected(tiny, tmp_path):
    ldm = {k: v.contiguous() for k, v in unet_to_ldm(tiny["style"]).items()}
    w = torch.zeros(4, 4)
    _refused(tiny, tmp_path, "flux.safetensors",
             {"model.diffusion_model.double_blocks.0.img_attn.qkv.weight": w}, "Flux")
    _refused(tiny, tmp_path, "sd3.safetensors",
             {"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": w}, "Diffusion 3")
    _refused(tiny, tmp_path, "svd.safetensors",
             {**ldm, "model.diffusion_model.input_blocks.1.0.time_stack.in_layers.0.weight": w},
             "video")
    _refused(tiny, tmp_path, "sdxl.safetensors",
             {**ldm, "model.diffusion_model.label_emb.0.0.weight": w}, "SDXL")
    sd2 = dict(ldm)
    for key in [k for k in sd2 if k.endswith("attn2.to_k.weight")]:
        sd2[key] = torch.zeros(sd2[key].shape[0], 1024)
    _refused(tiny, tmp_path, "sd2.safetensors", sd2, "1024")
    lora_state, _ = make_lora(tiny["config"])
    _refused(tiny, tmp_path, "lora_as_checkpoint.safetensors", lora_state, "LoRA")


def test_wrong_loras_and_wrong_sizes_leave_the_model_untouched(tiny, tmp_path, files):
    sdxl = {"lora_unet_input_blocks_4_1_transformer_blocks_9_attn1_to_q.lora_down.weight":
            torch.zeros(4, 640),
            "lora_unet_input_blocks_4_1_transformer_blocks_9_attn1_to_q.lora_up.weight":
            torch.zeros(640, 4)}
    save_file(sdxl, str(tmp_path / "sdxl_lora.safetensors"))
    with pytest.raises(CheckpointError, match="does not fit an SD1.5 UNet"):
        CheckpointDeltaSource(tiny["config"], loras=[(tmp_path / "sdxl_lora.safetensors", 1)])
    loha = {"lora_unet_conv_in.hada_w1_a": torch.zeros(2, 2)}
    save_file(loha, str(tmp_path / "loha.safetensors"))
    with pytest.raises(CheckpointError, match="LoHa.*LoraLoader"):
        CheckpointDeltaSource(tiny["config"], loras=[(tmp_path / "loha.safetensors", 1)])
    # A wider (different-architecture) style against the tiny EMO model: refused before any write.
    wide = dict(tiny["config"], block_out_channels=[64, 64, 64, 64])
    write_sd15_file(tmp_path / "wide.safetensors", random_unet(wide, 3))
    models = fresh_copy(tiny["emo"])
    source = CheckpointDeltaSource(wide, style=tmp_path / "wide.safetensors")
    with pytest.raises(CheckpointError, match="widths that differ"):
        apply_style_delta(models, source, 1.0, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(models.state_dict().values(),
                                                 tiny["emo"].state_dict().values(), strict=True))
    with pytest.raises(EMOInputError, match="between -10 and 10"):
        apply_style_delta(models, source, float("nan"), 1.0)
    with pytest.raises(EMOInputError, match="needs --style-checkpoint"):
        CheckpointDeltaSource(tiny["config"], base=files["base"])


def test_cli_options_apply_the_same_delta(tiny, files):
    parser = argparse.ArgumentParser()
    add_style_arguments(parser)
    args = parser.parse_args([
        "--style-checkpoint", str(files["style"]), "--base-checkpoint", str(files["base"]),
        "--lora", f"{files['lora']}:0.8", "--style-strength", "0.5",
        "--style-strength-reference", "0.5"])
    models = fresh_copy(tiny["emo"])
    report = apply_style_from_args(models, args)
    assert report.components["reference_net"].strength == 0.25
    for component, s in (("backbone", 0.5), ("reference_net", 0.25)):
        expected = expected_weights(tiny, component, s, files["lora_expected"], 0.8)
        assert max_diff(getattr(models, component).unet, expected) < 1e-6  # as above
    assert apply_style_from_args(models, parser.parse_args([])) is None
    assert parse_lora_spec(r"C:\loras\x.safetensors:0.7") == (
        type(files["lora"])(r"C:\loras\x.safetensors"), 0.7)
    assert parse_lora_spec("a/b.safetensors")[1] == 1.0


def test_safetensors_are_read_lazily_one_tensor_at_a_time(tiny, files):
    from emo_core.style.sources import UNetWeightFile

    weights = UNetWeightFile(files["style"], tiny["config"], "style")
    assert weights._tensors is None  # nothing but the header was read
    models = fresh_copy(tiny["emo"])
    report = apply_style_delta(
        models, CheckpointDeltaSource(tiny["config"], style=files["style"], base=files["base"]))
    largest = max(np.prod(s) for s in spatial_shapes(tiny["config"]).values()) * 4
    assert report.largest_tensor_bytes == largest  # per-tensor chunks, never a whole UNet
