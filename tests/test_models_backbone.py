"""EMO Backbone + ReferenceNet behaviour on tiny random models (CPU, fp32).

Tolerances: identical computations give bit-equal results; where the same maths runs through a
different batch layout (frames folded into the batch, rows split for CFG) float32 rounding can
differ by a few ulps, so the identity comparisons use 1e-5. Where equality is the point (a CFG row
computed with other rows in the batch equals the row computed alone), the models run in float64:
rounding there is ~1e-16 relative on outputs of magnitude ~1 through ~100 operations, so any
difference above EXACT = 1e-10 is a real leak between rows, whatever the thread count or machine
(in float32 the same comparison measured up to 1.19e-6: rounding, not a leak). "Changes the
output" means a max abs difference above 1e-3, far above rounding noise for these magnitudes.
"""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import UNet2DConditionModel

from emo_core.models import (
    BackboneCall,
    EMOBackbone,
    ReferenceFeatures,
    ReferenceSink,
    build_emo_models,
    unet_config,
)
from emo_core.models.temporal import TemporalModule

CHANGED = 1e-3
EXACT = 1e-10  # float64 comparisons of the same maths in another batch layout


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # 2 shared cores: one thread per process avoids oversubscription (measured 10x faster here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models():
    return build_emo_models("tiny", seed=0, with_vae=False).eval()


@pytest.fixture(scope="module")
def models64(models):
    """The same models in float64, for comparisons where exact equality is the point."""
    return copy.deepcopy(models).double()


def _maxdiff(a, b) -> float:
    return (a - b).abs().max().item()


def _give_weights(module: torch.nn.Module, seed: int, scale: float = 0.2) -> None:
    """Random values into a (zero-initialised) layer so its branch starts to matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)


def _temporal_modules(backbone) -> list[TemporalModule]:
    return [m for m in backbone.modules() if isinstance(m, TemporalModule)]


def _features(models, batch: int, n: int = 2, seed: int = 1,
              dtype: torch.dtype = torch.float32) -> ReferenceFeatures:
    gen = torch.Generator().manual_seed(seed)
    ref = torch.randn(1, 4, 8, 8, generator=gen, dtype=dtype)
    motion = torch.randn(1, n, 4, 8, 8, generator=gen, dtype=dtype) if n else None
    with torch.no_grad():
        feats = models.reference_net(ref, motion, context=models.context)
    bank = {k: v.expand(batch, *v.shape[1:]) for k, v in feats.bank.items()}
    motion = None if feats.motion is None else [m.expand(batch, *m.shape[1:]) for m in feats.motion]
    return ReferenceFeatures(bank=bank, motion=motion)


def _sample(batch=2, frames=3, seed=2, dtype=torch.float32):
    return torch.randn(batch, frames, 4, 8, 8, generator=torch.Generator().manual_seed(seed),
                       dtype=dtype)


def _call_state_on_modules(models) -> list[str]:
    """Names of modules holding per-call conditioning (the core keeps none: it is an argument)."""
    return [name for name, module in models.named_modules() for value in vars(module).values()
            if isinstance(value, (BackboneCall, ReferenceSink))]


def _run(backbone, sample, **kwargs):
    with torch.no_grad():
        return backbone(sample, 500, **kwargs)


# ---------------------------------------------------------------- zero-init identity
@pytest.fixture(scope="module")
def unet2d():
    torch.manual_seed(5)
    unet = UNet2DConditionModel.from_config(unet_config("tiny")).eval()
    with torch.no_grad():  # diffusers zero-inits nothing here, but make sure no layer is trivial
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return unet


def _identity_inputs(models, sample):
    batch, frames = sample.shape[:2]
    speed = models.speed_encoder(torch.zeros(batch, frames))  # zero speed -> real tokens
    audio = torch.zeros(batch, frames, 4, 64)
    face = models.face_locator(torch.ones(batch, 1, 64, 64))  # zero-init conv_out -> zeros
    context = torch.randn(1, 3, 64, generator=torch.Generator().manual_seed(9))
    return dict(audio_tokens=audio, speed_tokens=speed, face_embedding=face, context=context)


def _unet_frames(unet, sample, context, separately: bool = False):
    """The 2D UNet on every frame: all ``(b f)`` rows in one batch, or one call per frame."""
    batch, frames = sample.shape[:2]
    with torch.no_grad():
        if not separately:
            ctx = context.expand(batch * frames, *context.shape[1:])
            out = unet(sample.flatten(0, 1), 500, encoder_hidden_states=ctx).sample
            return out.unflatten(0, (batch, frames))
        ctx = context.expand(batch, *context.shape[1:])
        outs = [unet(sample[:, i], 500, encoder_hidden_states=ctx).sample for i in range(frames)]
    return torch.stack(outs, dim=1)


def test_zero_init_backbone_reproduces_2d_unet_frame_by_frame(models, unet2d):
    backbone = EMOBackbone.from_unet2d(unet2d, audio_token_dim=64, speed_token_dim=64,
                                       motion_num_attention_heads=1).eval()
    sample = _sample()
    inputs = _identity_inputs(models, sample)
    expected = _unet_frames(unet2d, sample, inputs["context"])
    assert expected.std() > 0.1 and _maxdiff(expected[:, 0], expected[:, 1]) > 0.1
    out = _run(backbone, sample, **inputs)
    assert _maxdiff(out, expected) < 1e-5  # measured: 0.0 (bit-exact)
    # One UNet call per frame: oneDNN picks conv algorithms by batch size, so the 2D UNet itself
    # differs from its own batched run by ~1e-4 here; the Backbone may not be further off.
    separate = _unet_frames(unet2d, sample, inputs["context"], separately=True)
    assert _maxdiff(out, separate) <= _maxdiff(expected, separate) + 1e-6

    # proj_in feeds the temporal attention but proj_out is still zero: still the identity.
    for i, module in enumerate(_temporal_modules(backbone)):
        _give_weights(module.temporal_transformer.proj_in, seed=i)
    assert _maxdiff(_run(backbone, sample, **inputs), expected) < 1e-5

    # Once proj_out is non-zero the temporal path acts, so the same test must now fail.
    for i, module in enumerate(_temporal_modules(backbone)):
        _give_weights(module.temporal_transformer.proj_out, seed=100 + i, scale=0.05)
    moved = _run(backbone, sample, **inputs)
    assert _maxdiff(moved, expected) > CHANGED
    # ...and frames now see each other: changing frame 0 alone changes frame 2's output.
    other = sample.clone()
    other[:, 0] += 1.0
    assert _maxdiff(_run(backbone, other, **inputs)[:, 2], moved[:, 2]) > CHANGED


def test_from_unet2d_copies_every_weight_exactly(unet2d):
    backbone = EMOBackbone.from_unet2d(unet2d, audio_token_dim=64, speed_token_dim=64,
                                       motion_num_attention_heads=1)
    ours = backbone.unet.state_dict()
    theirs = unet2d.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in theirs.items())


# ---------------------------------------------------------------- reference attention
def test_reference_changes_output_and_empty_bank_does_not(models):
    sample = _sample(batch=1)
    plain = _run(models.backbone, sample)
    empty = _run(models.backbone, sample, reference=ReferenceFeatures(bank={}, motion=None))
    with_ref = _run(models.backbone, sample, reference=_features(models, batch=1, n=0))
    assert torch.equal(plain, empty)
    assert _maxdiff(with_ref, plain) > CHANGED


def test_unconditional_rows_equal_a_run_without_reference(models64):
    sample = _sample(batch=2, dtype=torch.float64)
    sample[1] = sample[0]
    feats = _features(models64, batch=2, n=0, dtype=torch.float64)
    rows = torch.tensor([True, False])
    mixed = _run(models64.backbone, sample, reference=feats, reference_rows=rows)
    no_ref = _run(models64.backbone, sample)
    all_ref = _run(models64.backbone, sample, reference=feats)
    assert _maxdiff(mixed[1], no_ref[1]) < EXACT
    assert _maxdiff(mixed[0], all_ref[0]) < EXACT
    assert _maxdiff(mixed[0], mixed[1]) > CHANGED


def test_reference_net_bank_holds_normalised_attn1_inputs(models):
    ref_net = models.reference_net
    name = "down_blocks.1.attentions.0.transformer_blocks.0"
    seen = {}
    handle = ref_net.unet.get_submodule(name + ".norm1").register_forward_hook(
        lambda m, a, out: seen.setdefault("norm1", out))
    try:
        feats = _features(models, batch=1, n=2)
    finally:
        handle.remove()
    assert sorted(feats.bank) == sorted(ref_net.bank_names) and len(feats.bank) == 16
    tokens = feats.bank[name + ".attn1"]
    assert tokens.shape == (1, 4 * 4, 64)  # level 1: 8x8 latent -> 4x4 tokens, 64 channels
    # The ReferenceNet ran 1 reference + 2 motion rows; the bank keeps the reference row only.
    assert seen["norm1"].shape[0] == 3
    assert torch.equal(tokens[0], seen["norm1"][0])


def test_bank_is_cleared_after_use_and_caller_dict_untouched(models):
    feats = _features(models, batch=1, n=0)
    before = dict(feats.bank)
    _run(models.backbone, _sample(batch=1), reference=feats)
    assert feats.bank.keys() == before.keys()
    assert not _call_state_on_modules(models)


def test_cross_reference_variant_is_zero_at_init_then_acts(models64):
    unet_cfg = unet_config("tiny")
    torch.manual_seed(3)
    backbone = EMOBackbone(unet=unet_cfg, audio_token_dim=64, speed_token_dim=64,
                           motion_num_attention_heads=1, reference_attention="cross").eval()
    backbone = backbone.double()
    names = [n for n in backbone.state_dict() if ".attn_ref." in n]
    assert len({n.split(".attn_ref.")[0] for n in names}) == 16
    sample = _sample(batch=1, dtype=torch.float64)
    feats = _features(models64, batch=1, n=0, dtype=torch.float64)
    plain = _run(backbone, sample)
    assert _maxdiff(_run(backbone, sample, reference=feats), plain) < EXACT
    for i, (name, module) in enumerate(backbone.named_modules()):
        if name.endswith("attn_ref"):
            _give_weights(module.to_out, seed=i, scale=0.05)
    assert _maxdiff(_run(backbone, sample, reference=feats), plain) > CHANGED


# ---------------------------------------------------------------- motion frames
def test_motion_features_reach_all_21_temporal_modules(models):
    feats = _features(models, batch=2, n=2)
    assert len(feats.motion) == 21
    seen = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append(args[2]))
             for m in _temporal_modules(models.backbone)]
    try:
        _run(models.backbone, _sample(), reference=feats)
    finally:
        for h in hooks:
            h.remove()
    assert len(seen) == 21
    assert all(got is sent for got, sent in zip(seen, feats.motion, strict=True))


def test_changing_motion_features_changes_output(models):
    backbone = copy.deepcopy(models.backbone)
    for i, module in enumerate(_temporal_modules(backbone)):
        _give_weights(module.temporal_transformer.proj_out, seed=200 + i, scale=0.05)
    sample = _sample(batch=1)
    a = _run(backbone, sample, reference=_features(models, batch=1, n=2, seed=1))
    b = _run(backbone, sample, reference=_features(models, batch=1, n=2, seed=7))
    zeros = _run(backbone, sample, reference=None)
    assert _maxdiff(a, b) > CHANGED and _maxdiff(a, zeros) > CHANGED
    # The pristine Backbone (zero proj_out) ignores motion features entirely.
    ref_free = ReferenceFeatures(bank={}, motion=_features(models, batch=1, n=2).motion)
    assert torch.equal(_run(models.backbone, sample, reference=ref_free),
                       _run(models.backbone, sample))


def test_too_many_frames_is_refused(models):
    feats = _features(models, batch=1, n=4)
    with pytest.raises(ValueError, match=r"motion frames \(4\) \+ clip frames \(29\) = 33"):
        _run(models.backbone, torch.zeros(1, 29, 4, 8, 8), reference=feats)


# ---------------------------------------------------------------- audio, speed, face
def test_audio_attention_zero_at_init_then_acts_on_selected_rows(models64):
    sample = _sample(batch=2, dtype=torch.float64)
    sample[1] = sample[0]
    audio = torch.randn(2, 3, 4, 64, generator=torch.Generator().manual_seed(4),
                        dtype=torch.float64)
    plain = _run(models64.backbone, sample)
    assert torch.equal(_run(models64.backbone, sample, audio_tokens=audio), plain)

    backbone = copy.deepcopy(models64.backbone)
    for i, (name, module) in enumerate(backbone.named_modules()):
        if name.endswith(".attn") and ".audio_modules." in name:
            _give_weights(module.to_out, seed=i, scale=0.05)
    moved = _run(backbone, sample, audio_tokens=audio)
    assert _maxdiff(moved, plain) > CHANGED
    masked = _run(backbone, sample, audio_tokens=audio, audio_rows=torch.tensor([True, False]))
    assert _maxdiff(masked[1], plain[1]) < EXACT
    assert _maxdiff(masked[0], moved[0]) < EXACT


def test_speed_and_face_branches_zero_at_init_then_act(models):
    sample = _sample(batch=1)
    speed = models.speed_encoder(torch.full((1, 3), 8.0))
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    plain = _run(models.backbone, sample)
    assert torch.equal(_run(models.backbone, sample, speed_tokens=speed), plain)
    assert torch.equal(_run(models.backbone, sample,
                            face_embedding=models.face_locator(mask)), plain)

    bundle = copy.deepcopy(models)
    for module in _temporal_modules(bundle.backbone):
        block = module.temporal_transformer.transformer_blocks[0]
        _give_weights(block.attention_blocks[2].to_out, seed=1, scale=0.05)
        _give_weights(module.temporal_transformer.proj_out, seed=2, scale=0.05)
    slow = _run(bundle.backbone, sample, speed_tokens=speed)
    fast = _run(bundle.backbone, sample, speed_tokens=bundle.speed_encoder(torch.full((1, 3), 0.)))
    assert _maxdiff(slow, fast) > CHANGED

    _give_weights(bundle.face_locator.embedding.conv_out, seed=3, scale=0.05)
    face = bundle.face_locator(mask)
    assert face.shape == (1, 32, 8, 8) and face.abs().max() > 0
    with_face = _run(bundle.backbone, sample, face_embedding=face)
    assert _maxdiff(with_face, _run(bundle.backbone, sample)) > CHANGED


def test_deepcopy_rewires_hooks_to_the_copy(models):
    twin = copy.deepcopy(models.backbone)
    sample = _sample(batch=1)
    before = _run(models.backbone, sample)
    for i, module in enumerate(_temporal_modules(twin)):
        _give_weights(module.temporal_transformer.proj_out, seed=i, scale=0.05)
    assert _maxdiff(_run(twin, sample), before) > CHANGED
    assert torch.equal(_run(models.backbone, sample), before)


def test_bfloat16_runs_every_branch_close_to_float32(models):
    """Dtype plumbing: all conditioning paths active in bf16; bf16 keeps 8 mantissa bits, so
    outputs of magnitude ~1 after ~100 layers agree to a few 1e-2 (measured 0.05 of max 1.7)."""
    full = copy.deepcopy(models)
    for i, module in enumerate(_temporal_modules(full.backbone)):
        _give_weights(module.temporal_transformer.proj_out, seed=i, scale=0.05)
    half = copy.deepcopy(full).to(torch.bfloat16)

    def run(bundle, dtype):
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            feats = bundle.reference_net(torch.randn(1, 4, 8, 8, generator=gen).to(dtype),
                                         torch.randn(1, 2, 4, 8, 8, generator=gen).to(dtype))
            windows = torch.randn(1, 3, 5, 4, 32, generator=gen).to(dtype)
            return bundle.backbone(
                torch.randn(1, 3, 4, 8, 8, generator=gen).to(dtype), torch.tensor(500),
                reference=feats, audio_tokens=bundle.audio_projection(windows),
                speed_tokens=bundle.speed_encoder(torch.full((1, 3), 5.0, dtype=dtype)),
                face_embedding=bundle.face_locator(torch.ones(1, 1, 64, 64, dtype=dtype)),
                context=bundle.context)

    expected, got = run(full, torch.float32), run(half, torch.bfloat16)
    assert got.dtype == torch.bfloat16
    assert _maxdiff(got.float(), expected) < 0.15 * expected.abs().max().item()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"sample": torch.zeros(2, 4, 8, 8)}, r"sample must be \(b, f, 4, h, w\), got \(2, 4, 8, 8\)"),
        ({"sample": torch.zeros(1, 2, 4, 8, 8, dtype=torch.long)}, "sample must be a float"),
        ({"audio_tokens": torch.zeros(1, 2, 4, 32)}, r"audio_tokens must be \(1, 2, tokens, 64\)"),
        ({"speed_tokens": torch.zeros(1, 3, 1, 64)}, r"speed_tokens must be \(1, 2, tokens, 64\)"),
        ({"reference_rows": torch.tensor([1])}, r"reference_rows must be a \(1,\) bool"),
        ({"audio_rows": torch.tensor([True, False])}, r"audio_rows must be a \(1,\) bool"),
        ({"face_embedding": torch.zeros(1, 320, 8, 8)}, r"face_embedding must be \(1, 32, 8, 8\)"),
        ({"context": torch.zeros(1, 1, 768)}, r"context must be \(1 or 1, L, 64\)"),
        ({"timestep": torch.tensor([1, 2])}, r"timestep must be a scalar or \(1,\)"),
    ],
)
def test_backbone_rejects_bad_inputs(models, kwargs, pattern):
    sample = kwargs.pop("sample", torch.zeros(1, 2, 4, 8, 8))
    timestep = kwargs.pop("timestep", 10)
    with pytest.raises(ValueError, match=pattern):
        models.backbone(sample, timestep, **kwargs)
    assert not _call_state_on_modules(models)  # conditioning travels in arguments only


def test_reference_net_rejects_bad_inputs(models):
    with pytest.raises(ValueError, match=r"reference_latents must be \(b, 4, h, w\)"):
        models.reference_net(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"motion_latents must be \(1, 2, 4, 8, 8\)"):
        models.reference_net(torch.zeros(1, 4, 8, 8), torch.zeros(1, 2, 4, 4, 4))
