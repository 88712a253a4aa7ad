"""AnimateDiff motion modules -> EMO Backbone temporal modules (strict, .ckpt and .safetensors).

The per-site key list below is written out from AnimateDiff's original ``VanillaTemporalModule``
(mm_sd_v15_v2: 21 sites x 28 tensors = 588), not read from our model, so a naming drift in the
Backbone fails here.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from emo_core.errors import CheckpointError
from emo_core.io.animatediff import apply_motion_module, load_motion_module, motion_parameters
from emo_core.io.safe_load import save_safetensors_atomic

_ATTN = [f"attention_blocks.{i}.{p}" for i in (0, 1) for p in (
    "to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias",
    "pos_encoder.pe")]
_BLOCK = [*_ATTN, *(f"norms.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")),
          "ff.net.0.proj.weight", "ff.net.0.proj.bias", "ff.net.2.weight", "ff.net.2.bias",
          "ff_norm.weight", "ff_norm.bias"]
SITE_KEYS = sorted(
    [f"temporal_transformer.{p}.{w}" for p in ("norm", "proj_in", "proj_out")
     for w in ("weight", "bias")]
    + [f"temporal_transformer.transformer_blocks.0.{k}" for k in _BLOCK]
)
SITES = ([f"down_blocks.{b}.motion_modules.{j}" for b in range(4) for j in range(2)]
         + ["mid_block.motion_modules.0"]
         + [f"up_blocks.{b}.motion_modules.{j}" for b in range(4) for j in range(3)])


def make_backbone(seed: int = 0):
    from emo_core.models.backbone import EMOBackbone
    from emo_core.models.presets import emo_component_configs

    torch.manual_seed(seed)
    return EMOBackbone.from_config(emo_component_configs("tiny")["backbone"]).eval()


@functools.cache
def sinusoid(rows: int, dim: int) -> torch.Tensor:
    """AnimateDiff's PositionalEncoding table ``(1, rows, dim)``, computed independently."""
    pe = torch.zeros(1, rows, dim)
    for pos in range(rows):
        for i in range(0, dim, 2):
            angle = pos / (10000 ** (i / dim))
            pe[0, pos, i], pe[0, pos, i + 1] = math.sin(angle), math.cos(angle)
    return pe


def fake_animatediff(backbone, seed: int = 1, pe_rows: int = 32) -> dict[str, torch.Tensor]:
    """A random motion-module state dict with AnimateDiff's original names and the Backbone's
    shapes (pos_encoder.pe: the real sinusoid with ``pe_rows`` rows)."""
    shapes = {k.removeprefix("unet."): v.shape for k, v in motion_parameters(backbone).items()}
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for site in SITES:
        for key in SITE_KEYS:
            name = f"{site}.{key}"
            shape = shapes[name]
            out[name] = (sinusoid(pe_rows, shape[-1]).clone() if key.endswith("pe")
                         else torch.randn(shape, generator=gen))
    return out


@pytest.fixture(scope="module")
def backbone():
    return make_backbone()


def test_backbone_names_are_animatediff_v2(backbone):
    names = {k.removeprefix("unet.") for k in motion_parameters(backbone)}
    assert names == {f"{s}.{k}" for s in SITES for k in SITE_KEYS}
    assert len(names) == 588


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_motion_module_loads_strictly_and_exactly(tmp_path, suffix):
    model = make_backbone()
    speed_before = {k: v.clone() for k, v in model.state_dict().items()
                    if ".attention_blocks.2." in k or ".norms.2." in k}
    source = fake_animatediff(model)
    path = tmp_path / f"mm_sd_v15_v2{suffix}"
    if suffix == ".ckpt":
        torch.save(source, path)
    else:
        save_safetensors_atomic(source, path)
    assert apply_motion_module(model, load_motion_module(path)) == 588
    state = model.state_dict()
    for key, value in source.items():
        assert torch.equal(state["unet." + key], value), key
    # EMO's own speed attention is not in AnimateDiff files: untouched (zero output stays zero)
    assert speed_before and all(torch.equal(state[k], v) for k, v in speed_before.items())
    assert not any(state[k].any() for k in speed_before if "to_out.0.weight" in k)


def test_positional_tables_of_other_lengths_are_fitted(tmp_path, backbone):
    model = make_backbone()
    own = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("pe")}
    for rows in (24, 40):  # v1-length table, and a longer one
        apply_motion_module(model, fake_animatediff(model, pe_rows=rows))
        for key, value in own.items():
            # float32 sin/cos of the same angles: agree to ~1e-6
            assert torch.allclose(model.state_dict()[key], value, atol=1e-5), (rows, key)


def _refuse(model, state_dict, match):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=match) as info:
        apply_motion_module(model, state_dict)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # nothing was loaded
    return str(info.value)


def test_wrong_motion_modules_are_refused_and_load_nothing(backbone):
    model = make_backbone()
    good = fake_animatediff(model)
    sdxl_like = {k: v for k, v in good.items()
                 if not k.startswith(("down_blocks.3", "up_blocks.3"))}
    assert "SDXL" in _refuse(model, sdxl_like, "do not match the backbone")
    v1 = {k: v for k, v in good.items() if not k.startswith("mid_block")}
    _refuse(model, v1, "AnimateDiff v1")
    one_missing = dict(good)
    del one_missing["up_blocks.3.motion_modules.2.temporal_transformer.proj_out.bias"]
    assert "1 missing" in _refuse(model, one_missing, "does not match")
    wide = dict(good)
    wide["down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"] = torch.ones(9, 9)
    assert "1 mis-shaped" in _refuse(model, wide, "does not match")
    adapter = {"down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.weight":
               torch.ones(2, 2)}
    _refuse(model, adapter, "MotionAdapter")
    _refuse(model, {"conv_in.weight": torch.ones(2)}, "no AnimateDiff motion modules")


def test_dataparallel_prefix_and_file_errors(tmp_path, backbone):
    good = fake_animatediff(backbone)
    path = tmp_path / "mm.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in good.items()}}, path)
    assert load_motion_module(path).keys() == good.keys()
    other = save_safetensors_atomic({"encoder.x": torch.ones(1)}, tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="vae.safetensors.*no AnimateDiff"):
        load_motion_module(other)


def test_sd15_backbone_has_the_mm_sd_v15_v2_layout():
    """Full-size Backbone on the meta device (no memory): same 588 names, and the shapes of the
    released file (proj_in 1280 wide at the mid block, GEGLU 8x width, 32-row positions)."""
    from emo_core.models.backbone import EMOBackbone
    from emo_core.models.presets import emo_component_configs

    with torch.device("meta"):
        full = EMOBackbone.from_config(emo_component_configs("sd15")["backbone"])
    params = motion_parameters(full)
    expected = {f"{s}.{k}" for s in SITES for k in SITE_KEYS}
    assert {k.removeprefix("unet.") for k in params} == expected
    site = "unet.down_blocks.0.motion_modules.0.temporal_transformer."
    assert params[site + "transformer_blocks.0.ff.net.0.proj.weight"].shape == (2560, 320)
    pe = params[site + "transformer_blocks.0.attention_blocks.1.pos_encoder.pe"]
    assert pe.shape == (1, 32, 320)
    assert params["unet.mid_block.motion_modules.0.temporal_transformer.proj_in.weight"].shape == (
        1280, 1280)
    # 454.4 M values = 1.82 GB in fp32, the size of mm_sd_v15_v2.ckpt
    assert sum(v.numel() for v in params.values()) == 454_417_600
