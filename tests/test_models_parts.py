"""Presets, parameter counts, AnimateDiff key layout and the small EMO components."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from diffusers import UNet2DConditionModel
from transformers import Wav2Vec2Model

from emo_core.errors import EMOInputError
from emo_core.models import (
    AudioProjection,
    EMOModels,
    FaceLocator,
    SpeedEncoder,
    TemporalModule,
    build_emo_models,
    emo_component_configs,
    encode_speed_buckets,
    unet_config,
    wav2vec2_config,
)
from emo_core.models.sites import unet_sites

logger = logging.getLogger(__name__)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: avoid oversubscription
    yield
    torch.set_num_threads(threads)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- presets and sizes
@pytest.fixture(scope="module")
def sd15_meta():
    """Full-size models on the meta device: shapes and counts without allocating 9 GB."""
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config("sd15"))
        models = build_emo_models("sd15", with_vae=True)
    return unet, models


def test_sd15_parameter_counts(sd15_meta, capsys):
    unet, models = sd15_meta
    counts = {name: _count(getattr(models, name)) for name in
              ("reference_net", "backbone", "face_locator", "audio_projection", "speed_encoder",
               "vae")}
    with capsys.disabled():
        print(f"\nSD1.5 UNet2DConditionModel: {_count(unet):,}")
        for name, value in counts.items():
            print(f"  {name}: {value:,}")
        print(f"  EMOModels total: {_count(models):,}")
    assert _count(unet) == 859_520_964  # the published SD1.5 UNet size
    # ReferenceNet = the UNet minus conv_norm_out (2x320) and conv_out (320*4*9 + 4).
    assert counts["reference_net"] == 859_520_964 - 640 - (320 * 4 * 9 + 4)
    assert counts["vae"] == 83_653_863  # SD1.5 AutoencoderKL
    motion = sum(p.numel() for n, p in models.backbone.named_parameters()
                 if ".motion_modules." in n and ".attention_blocks.2." not in n
                 and ".norms.2." not in n)
    # mm_sd_v15_v2.ckpt is 1.82 GB of fp32 = 453.2 M parameters (plus the pe buffers).
    assert motion == 453_209_280
    assert counts["backbone"] > _count(unet) + motion


def test_tiny_keeps_the_sd15_topology():
    tiny = UNet2DConditionModel.from_config(unet_config("tiny"))
    sites = unet_sites(tiny)
    assert len(sites) == 21 and sum(s.spatial for s in sites) == 16
    heads = [m.heads for n, m in tiny.named_modules() if n.endswith("attn1")]
    sizes = {m.inner_dim // m.heads for n, m in tiny.named_modules() if n.endswith("attn1")}
    assert len(heads) == 16 and sizes == {32}  # realistic head size, fewer heads


@pytest.mark.parametrize("preset", ["tiny", "sd15"])
def test_wav2vec2_configs_keep_50_hz(preset):
    cfg = wav2vec2_config(preset)
    assert math.prod(cfg.conv_stride) == 320  # 16 kHz / 320 = 50 feature frames per second
    if preset == "sd15":
        assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (768, 12, 12)
        return
    torch.manual_seed(0)
    model = Wav2Vec2Model(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 16000), output_hidden_states=True)
    assert out.last_hidden_state.shape == (1, 49, 32)  # standard wav2vec framing of 1 s
    assert len(out.hidden_states) == cfg.num_hidden_layers + 1


def test_component_configs_round_trip_and_seeded_build():
    models = build_emo_models("tiny", seed=3, with_vae=True)
    configs = models.component_configs()
    text = json.dumps(configs)  # must be JSON for the checkpoint metadata
    rebuilt = EMOModels.from_configs(json.loads(text))
    ours, theirs = models.state_dict(), rebuilt.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(ours[k].shape == theirs[k].shape for k in ours)
    again = build_emo_models("tiny", seed=3, with_vae=True).state_dict()
    other = build_emo_models("tiny", seed=4, with_vae=True).state_dict()
    key = "backbone.unet.conv_in.weight"
    assert torch.equal(again[key], ours[key]) and not torch.equal(other[key], ours[key])
    assert configs.keys() == {*emo_component_configs("tiny"), "vae"}


def test_mismatched_component_wiring_is_refused():
    configs = emo_component_configs("tiny")
    configs["audio_projection"]["output_dim"] = 32
    with pytest.raises(ValueError, match="audio_projection.output_dim = 32 does not match "
                                         "backbone.audio_token_dim = 64"):
        EMOModels.from_configs(configs)


# ---------------------------------------------------------------- AnimateDiff layout
def _animatediff_v2_keys() -> set[str]:
    """mm_sd_v15_v2 key names, written out from the AnimateDiff v2 layout (not from our code)."""
    sites = [f"down_blocks.{i}.motion_modules.{j}" for i in range(4) for j in range(2)]
    sites += ["mid_block.motion_modules.0"]
    sites += [f"up_blocks.{i}.motion_modules.{j}" for i in range(4) for j in range(3)]
    block = "temporal_transformer.transformer_blocks.0"
    per_site = ["temporal_transformer.norm.weight", "temporal_transformer.norm.bias",
                "temporal_transformer.proj_in.weight", "temporal_transformer.proj_in.bias",
                "temporal_transformer.proj_out.weight", "temporal_transformer.proj_out.bias",
                f"{block}.ff.net.0.proj.weight", f"{block}.ff.net.0.proj.bias",
                f"{block}.ff.net.2.weight", f"{block}.ff.net.2.bias",
                f"{block}.ff_norm.weight", f"{block}.ff_norm.bias"]
    for a in (0, 1):
        attn = f"{block}.attention_blocks.{a}"
        per_site += [f"{attn}.to_q.weight", f"{attn}.to_k.weight", f"{attn}.to_v.weight",
                     f"{attn}.to_out.0.weight", f"{attn}.to_out.0.bias", f"{attn}.pos_encoder.pe",
                     f"{block}.norms.{a}.weight", f"{block}.norms.{a}.bias"]
    return {f"{site}.{key}" for site in sites for key in per_site}


def test_backbone_motion_keys_are_animatediff_v2(sd15_meta):
    backbone = sd15_meta[1].backbone
    expected = _animatediff_v2_keys()
    assert len(expected) == 588
    state = backbone.state_dict()
    ours = {k.removeprefix("unet.") for k in state if ".motion_modules." in k
            and ".attention_blocks.2." not in k and ".norms.2." not in k}
    assert ours == expected
    # SD1.5 shapes of one up-block site (1280 channels): pe (1, 32, c), GEGLU (8c, c).
    site = "unet.up_blocks.1.motion_modules.2.temporal_transformer."
    blk = site + "transformer_blocks.0."
    assert state[blk + "attention_blocks.0.pos_encoder.pe"].shape == (1, 32, 1280)
    assert state[blk + "ff.net.0.proj.weight"].shape == (8 * 1280, 1280)
    assert state[blk + "ff.net.2.weight"].shape == (1280, 4 * 1280)
    assert state[blk + "attention_blocks.1.to_q.weight"].shape == (1280, 1280)
    assert backbone.unet.up_blocks[1].motion_modules[2].temporal_transformer.transformer_blocks[
        0].attention_blocks[0].heads == 8


def test_animatediff_state_dict_loads_into_the_backbone():
    """A state dict shaped like mm_sd_v15_v2 (tiny widths) loads with only EMO's own keys left."""
    models = build_emo_models("tiny", with_vae=False)
    backbone = models.backbone
    target = backbone.state_dict()
    gen = torch.Generator().manual_seed(0)
    motion = {f"unet.{k}": torch.randn(target[f"unet.{k}"].shape, generator=gen)
              for k in _animatediff_v2_keys()}
    result = backbone.load_state_dict(motion, strict=False)
    assert result.unexpected_keys == []
    leftover = {k for k in result.missing_keys if ".motion_modules." in k}
    assert leftover and all(".attention_blocks.2." in k or ".norms.2." in k for k in leftover)
    key = "unet.mid_block.motion_modules.0.temporal_transformer.proj_out.weight"
    assert torch.equal(backbone.state_dict()[key], motion[key])


def test_positional_encoding_is_sinusoidal():
    module = TemporalModule(64, num_attention_heads=2, max_frames=32)
    pe = module.temporal_transformer.transformer_blocks[0].attention_blocks[0].pos_encoder.pe
    assert pe.shape == (1, 32, 64)
    position, i = 5, 3  # pe[p, 2i] = sin(p / 10000^(2i/d)), pe[p, 2i+1] = cos(...)
    angle = position / 10000 ** (2 * i / 64)
    assert pe[0, position, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert pe[0, position, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_temporal_module_refuses_too_many_frames_and_bad_motion():
    module = TemporalModule(32, num_attention_heads=1, max_frames=8)
    hidden = torch.zeros(6, 32, 2, 2)
    with pytest.raises(EMOInputError, match=r"motion frames \(3\) \+ clip frames \(6\) = 9"):
        module(hidden, 6, torch.zeros(1, 3, 32, 2, 2))
    with pytest.raises(ValueError, match=r"motion must be \(1, 2, 32, 2, 2\), got \(1, 2, 16, 2, 2\)"):
        module(hidden, 6, torch.zeros(1, 2, 16, 2, 2))


# ---------------------------------------------------------------- speed encoder
def test_speed_buckets_follow_the_paper_formula():
    centers, radii = [0.0, 2.0, 4.0], [2.0, 2.0, 1.0]
    speed = torch.tensor([[0.0, 3.0], [10.0, -1.0]])
    got = encode_speed_buckets(speed, centers, radii)
    assert got.shape == (2, 2, 3)
    for (r, c), w in [((0, 1), 3.0), ((1, 1), -1.0)]:
        want = [math.tanh(3 * (w - cd) / rd) for cd, rd in zip(centers, radii, strict=True)]
        assert got[r, c].tolist() == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError, match="radii must be > 0"):
        encode_speed_buckets(speed, [0.0], [0.0])


def test_speed_encoder_windows_clamp_at_the_edges():
    encoder = SpeedEncoder(hidden_dim=16, output_dim=8, num_tokens=2)
    speed = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    tokens = encoder(speed)
    assert tokens.shape == (1, 4, 2, 8)
    # Frame 0's window is (1, 1, 1, 2, 3): identical to passing that window explicitly.
    window = torch.tensor([[[1.0, 1.0, 1.0, 2.0, 3.0]]])
    assert torch.allclose(encoder(window)[0, 0], tokens[0, 0], atol=1e-6)
    assert (tokens[0, 0] - tokens[0, 1]).abs().max() > 1e-4
    with pytest.raises(ValueError, match=r"speed must be \(b, f\) or windows \(b, f, 5\)"):
        encoder(torch.zeros(1, 4, 3))


# ---------------------------------------------------------------- audio projection, face
def test_audio_projection_shapes_and_hallo_names():
    proj = AudioProjection(seq_len=5, blocks=4, channels=32, intermediate_dim=64, output_dim=48,
                           context_tokens=4)
    assert {n.split(".")[0] for n, _ in proj.named_parameters()} == {"proj1", "proj2", "proj3",
                                                                      "norm"}
    windows = torch.randn(2, 3, 5, 4, 32)
    tokens = proj(windows)
    assert tokens.shape == (2, 3, 4, 48)
    # Frames are independent: frame 1 alone gives the same tokens.
    assert torch.allclose(proj(windows[:, 1:2])[:, 0], tokens[:, 1], atol=1e-6)
    with pytest.raises(ValueError, match=r"audio windows must be \(b, f, 5, 4, 32\), got "
                                         r"\(2, 3, 5, 12, 32\)"):
        proj(torch.zeros(2, 3, 5, 12, 32))


def test_face_locator_zero_at_init_with_latent_shape():
    locator = FaceLocator(conditioning_channels=1, block_out_channels=(8, 16, 16, 32),
                          embedding_channels=32)
    mask = torch.zeros(2, 1, 64, 48)
    mask[:, :, 10:40, 10:30] = 1
    out = locator(mask)
    assert out.shape == (2, 32, 8, 6) and torch.count_nonzero(out) == 0
    with pytest.raises(ValueError, match=r"mask must be \(b, 1, H, W\), got \(2, 3, 64, 64\)"):
        locator(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match="multiples of 8"):
        locator(torch.zeros(1, 1, 60, 64))
