"""Reference keys/values projected once per clip (issue 16): with diffusers' default
``AttnProcessor2_0`` the Backbone's attn1 takes precomputed ``to_k``/``to_v`` of the reference
tokens (``EMOBackbone.project_reference``) instead of re-projecting them for every frame, guidance
row and step, and computes the same attention as the generic path (the processor over
``cat(hidden, tokens)``), for mixed guidance rows (u, r, ra). Any other processor, or a
config the fast path does not match, keeps the generic path.

Tolerances: float64 agrees to 1e-10 (only summation order differs: the projection of the
reference tokens happens on ``b`` rows instead of ``b*f``). In float32 the same reordering
through the random non-zero tiny network gives differences of rounding size (measured 1.1e-6; float64 8e-15); the bound 1e-4 is
far below the reference's own effect (> 1e-3, see test_core_call_args.CHANGED).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers.models import attention_processor as ap

from benchmarks.core_inputs import broadcast, nonzero_models, sampling_inputs

ROWS, AUDIO_ROWS = (False, True, True), (False, False, True)  # separate guidance: u, r, ra
ATTN1 = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every test here on one torch thread (see conftest.one_torch_thread)."""


def _setup(dtype):
    models = nonzero_models().to(dtype).eval()
    reference, inputs = sampling_inputs(models, ROWS, AUDIO_ROWS)
    cast = {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in inputs.items()}
    with torch.no_grad():
        features = models.reference_net(**{k: v.to(dtype) if torch.is_tensor(v) and
                                           v.is_floating_point() else v
                                           for k, v in reference.items()})
        projected = models.backbone.project_reference(features)
    kv = {k: tuple(t.expand(len(ROWS), *t.shape[1:]) for t in pair)
          for k, pair in projected.kv.items()}
    generic = broadcast(features, len(ROWS))
    return models, generic, dataclasses.replace(generic, kv=kv), cast


def _run(models, features, inputs):
    inputs = dict(inputs)
    with torch.no_grad():
        return models.backbone(inputs.pop("sample"), 500, reference=features, **inputs)


@pytest.fixture(scope="module")
def double():
    return _setup(torch.float64)


def test_projected_kv_equals_the_generic_path_float64(double):
    models, generic, fast, inputs = double
    assert set(fast.kv) == set(generic.bank) and fast.kv  # every attn1 took the projection
    k, v = fast.kv[ATTN1]
    attn1 = models.backbone.unet.get_submodule(ATTN1)
    assert k.shape == v.shape == (len(ROWS), generic.bank[ATTN1].shape[1], attn1.inner_dim)
    expected, got = _run(models, generic, inputs), _run(models, fast, inputs)
    assert (got - expected).abs().max() < 1e-10
    # The fast path reads the precomputed values (not silently the generic path): wrong K/V
    # change the reference rows, and leave the unconditional row (no reference) alone.
    wrong = dataclasses.replace(fast, kv={n: (k * 2, v) for n, (k, v) in fast.kv.items()})
    changed = _run(models, wrong, inputs)
    assert (changed[1:] - expected[1:]).abs().max() > 1e-3
    assert (changed[0] - expected[0]).abs().max() < 1e-10


def test_projected_kv_equals_the_generic_path_float32():
    models, generic, fast, inputs = _setup(torch.float32)
    expected, got = _run(models, generic, inputs), _run(models, fast, inputs)
    assert (got - expected).abs().max() < 1e-4


def test_other_processors_keep_the_generic_path(double):
    models, generic, fast, inputs = double
    unet = models.backbone.unet
    try:
        unet.set_attn_processor(ap.AttnProcessor())
        with torch.no_grad():
            assert models.backbone.project_reference(generic).kv == {}
        # K/V projected before a processor swap are ignored: the swapped processor computes it.
        wrong = dataclasses.replace(fast, kv={n: (k * 2, v) for n, (k, v) in fast.kv.items()})
        got, expected = _run(models, wrong, inputs), _run(models, generic, inputs)
        assert (got - expected).abs().max() < 1e-10
    finally:
        unet.set_attn_processor(ap.AttnProcessor2_0())


def test_a_config_the_fast_path_does_not_match_falls_back(double):
    models, generic, fast, inputs = double
    attn1 = models.backbone.unet.get_submodule(ATTN1)
    assert attn1.projects_reference()
    attn1.rescale_output_factor = 2.0
    try:
        assert not attn1.projects_reference()
        with torch.no_grad():
            assert ATTN1 not in models.backbone.project_reference(generic).kv
    finally:
        attn1.rescale_output_factor = 1.0


def test_the_backbone_saves_exactly_the_per_frame_reference_projections(double):
    # FLOPs depend on shapes only; the math SDPA backend makes attention visible to the counter.
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from benchmarks.flops_common import count

    models, generic, fast, inputs = double
    # Frozen parameters: torch's module tracker cannot hook no-grad views of trainable ones.
    params = [p for p in models.parameters() if p.requires_grad]
    try:
        for param in params:
            param.requires_grad_(False)
        with sdpa_kernel(SDPBackend.MATH):
            before, _ = count(lambda: _run(models, generic, inputs))
            after, _ = count(lambda: _run(models, fast, inputs))
    finally:
        for param in params:
            param.requires_grad_(True)
    frames, referenced = inputs["sample"].shape[1], sum(ROWS)
    saved = 0  # to_k and to_v of every reference token, for every frame of every referenced row
    for name, tokens in generic.bank.items():
        attn1 = models.backbone.unet.get_submodule(name)
        saved += 2 * 2 * tokens.shape[1] * tokens.shape[2] * attn1.inner_dim
    assert before - after == pytest.approx(saved * frames * referenced / 1e9, rel=1e-9)
    assert after < before
