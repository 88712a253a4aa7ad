"""The model core takes its per-call conditioning as arguments (``cross_attention_kwargs``):
reference attention survives every attention-processor swap (or refuses loudly), an attention
mask never drops the reference, attn2 never sees the EMO kwarg, and ``emo_core.models`` stays
independent of ``emo_core.pipeline``.

Tolerances: another processor computes the same attention with other kernels (math / SDPA /
sliced). With these random non-zero weights float32 rounding differences grow to 4e-4 through
the network (2.7e-5 even without any reference), so the processor comparisons run in float64,
where they agree to 1e-12: the 1e-5 bound then tests the maths, not the rounding. "Uses the
reference" means a difference above 1e-3 from a run without it (measured 0.33).
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import re
from pathlib import Path

import pytest
import torch
from diffusers.models import attention_processor as ap

from benchmarks.core_inputs import broadcast, nonzero_models, sampling_inputs
from emo_core.models import BackboneCall, ReferenceAttention
from emo_core.models.conditioning import runs_of
from emo_core.models.reference_attention import REFERENCE_PROCESSORS

CHANGED = 1e-3
ROWS, AUDIO_ROWS = (False, True, True), (False, False, True)  # separate guidance: u, r, ra


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every test here on one torch thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def setup():
    models = nonzero_models().double().eval()
    reference, backbone = (_double(d) for d in sampling_inputs(models, ROWS, AUDIO_ROWS))
    with torch.no_grad():
        features = broadcast(models.reference_net(**reference), len(ROWS))
    return models, features, backbone


def _double(inputs: dict) -> dict:
    return {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in inputs.items()}


def _run(models, features, inputs):
    inputs = dict(inputs)
    with torch.no_grad():
        return models.backbone(inputs.pop("sample"), 500, reference=features, **inputs)


@pytest.fixture(scope="module")
def expected(setup):
    models, features, inputs = setup
    out = _run(models, features, inputs)
    no_reference = _run(models, None, {**inputs, "reference_rows": None})
    assert (out[1:] - no_reference[1:]).abs().max() > CHANGED  # the reference is used
    return out


@pytest.mark.parametrize("processor", [ap.AttnProcessor(), ap.AttnProcessor2_0(),
                                       ap.SlicedAttnProcessor(slice_size=1),
                                       ap.SlicedAttnProcessor(slice_size=3)],
                         ids=lambda p: f"{type(p).__name__}{getattr(p, 'slice_size', '')}")
def test_every_sd15_processor_keeps_the_reference(setup, expected, processor):
    models, features, inputs = setup
    unet = models.backbone.unet
    try:
        unet.set_attn_processor(processor)
        attn1 = unet.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.attn1")
        assert isinstance(attn1, ReferenceAttention) and attn1.processor is processor
        got = _run(models, features, inputs)
    finally:
        unet.set_attn_processor(ap.AttnProcessor2_0())
    assert (got - expected).abs().max() <= 1e-5


def _constructible_processors():
    """Every attention-processor class diffusers ships that builds with no arguments here (the
    xformers ones build without xformers but cannot run)."""
    found = []
    for name, cls in sorted(vars(ap).items()):
        if not (inspect.isclass(cls) and "Processor" in name and callable(cls)):
            continue
        if "XFormers" in name and importlib.util.find_spec("xformers") is None:
            continue
        try:
            found.append((name, cls()))
        except Exception:  # needs arguments, or an absent backend (xformers, NPU, XLA)
            continue
    return found


def test_any_other_processor_on_attn1_raises_instead_of_dropping_the_reference(setup, expected):
    models, features, inputs = setup
    unet = models.backbone.unet
    attn1s = [m for m in unet.modules() if isinstance(m, ReferenceAttention)]
    outcomes = {}
    for name, processor in _constructible_processors():
        try:
            for attn1 in attn1s:
                attn1.set_processor(processor)
            got = _run(models, features, inputs)
            outcomes[name] = float((got - expected).abs().max())
        except ValueError as error:
            assert "the reference would be dropped" in str(error), name
            outcomes[name] = "raised"
        finally:
            for attn1 in attn1s:
                attn1.set_processor(ap.AttnProcessor2_0())
    assert {"AttnProcessor", "AttnProcessor2_0", "PAGIdentitySelfAttnProcessor2_0"} <= set(outcomes)
    for name, outcome in outcomes.items():
        if type(getattr(ap, name)()) in REFERENCE_PROCESSORS:
            assert outcome != "raised" and outcome <= 1e-5, (name, outcome)
        else:
            assert outcome == "raised", (name, outcome)


def test_fused_qkv_projections_raise_with_a_hint(setup):
    models, features, inputs = setup
    unet = models.backbone.unet
    unet.fuse_qkv_projections()
    try:
        with pytest.raises(ValueError, match="unfuse_qkv_projections"):
            _run(models, features, inputs)
    finally:
        unet.unfuse_qkv_projections()


def test_an_attention_mask_keeps_the_reference(setup):
    models, features, _ = setup
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn1"
    attn1 = models.backbone.unet.get_submodule(name)
    gen = torch.Generator().manual_seed(4)
    hidden = torch.randn(2, 16, 64, generator=gen, dtype=torch.float64)
    tokens = torch.randn(2, 16, 64, generator=gen, dtype=torch.float64)

    def call(rows):
        return BackboneCall(frames=1, batch=2, bank={name: tokens}, reference_runs=runs_of(rows, 2),
                            audio=None, audio_runs=runs_of(None, 2), speed=None, motion=None)

    with torch.no_grad():
        plain = attn1(hidden)
        with_ref = attn1(hidden, emo=call(None))
        open_mask = torch.zeros(2, 1, 16, dtype=torch.float64)  # additive: attend everywhere
        masked = attn1(hidden, attention_mask=open_mask, emo=call(None))
        mixed = attn1(hidden, attention_mask=open_mask, emo=call((False, True)))
    assert (with_ref - plain).abs().max() > CHANGED
    assert (masked - with_ref).abs().max() <= 1e-6
    assert (mixed[1] - with_ref[1]).abs().max() <= 1e-6 and (mixed[0] - plain[0]).abs().max() <= 1e-6


def test_attn2_never_sees_the_emo_kwarg(setup, caplog):
    models, features, inputs = setup
    with caplog.at_level(logging.WARNING, logger="diffusers"):
        _run(models, features, inputs)
    assert not [r for r in caplog.records if "are not expected" in r.getMessage()]


def test_models_import_nothing_from_pipeline():
    root = Path(__file__).resolve().parents[1] / "emo_core" / "models"
    pattern = re.compile(r"^\s*(from|import)\s+(\.\.pipeline|emo_core\.pipeline)", re.M)
    offenders = [p.name for p in root.glob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
