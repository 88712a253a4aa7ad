"""Guidance on part of the steps (emo_core/pipeline/guidance.py): which steps run which rows,
that a reused step adds exactly the last full step's guidance correction, and that the
pipeline runs the scheduled rows (Backbone call count and batch per step, tiny preset)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emo_core.errors import EMOInputError
from emo_core.pipeline.guidance import (
    FULL,
    OFF,
    REUSE,
    GuidedSteps,
    plan_guidance,
    rows_per_step,
    step_kinds,
)
from emo_core.pipeline.settings import GenerationSettings


def test_step_kinds_interval_and_refresh():
    assert step_kinds(10, 0.0, 1.0, 1) == (FULL,) * 10
    assert step_kinds(10, 0.0, 0.4, 1) == (FULL,) * 4 + (OFF,) * 6
    assert step_kinds(10, 0.5, 1.0, 1) == (OFF,) * 5 + (FULL,) * 5
    assert step_kinds(7, 0.0, 1.0, 3) == (FULL, REUSE, REUSE, FULL, REUSE, REUSE, FULL)
    assert step_kinds(10, 0.2, 0.6, 2) == (OFF, OFF, FULL, REUSE, FULL, REUSE, OFF, OFF, OFF, OFF)
    plan = plan_guidance("separate", 2.0, 3.5)
    assert rows_per_step(plan, step_kinds(40, 0.0, 1.0, 1)) == 3.0
    assert rows_per_step(plan, step_kinds(40, 0.0, 0.3, 1)) == pytest.approx(1 + 2 * 12 / 40)


def test_reuse_adds_the_last_full_correction_and_off_is_conditional():
    plan = plan_guidance("separate", 2.0, 3.5)
    guided = GuidedSteps(plan, (FULL, REUSE, OFF))
    u, r, ra = (torch.full((1, 2, 4, 3, 3), v) for v in (1.0, 2.0, 4.0))
    first = guided.combine(0, torch.cat([u, r, ra]))
    # eps = u + s_ref (r - u) + s_aud (ra - r) = 1 + 2 * 1 + 3.5 * 2 = 10
    assert torch.allclose(first, torch.full_like(u, 10.0))
    assert guided.plan(1).batch == guided.plan(2).batch == 1
    assert guided.plan(1).reference_rows.tolist() == [True]
    assert guided.plan(1).audio_rows.tolist() == [True]
    later = torch.full_like(u, 5.0)  # a new conditional prediction at the reused step
    assert torch.allclose(guided.combine(1, later), later + (10.0 - 4.0))
    assert torch.equal(guided.combine(2, later), later)


def test_settings_validate_the_schedule_fields():
    GenerationSettings(guidance_start=0.2, guidance_end=0.2).validate()  # empty interval: no CFG
    for changes in ({"guidance_start": 0.6, "guidance_end": 0.5}, {"guidance_end": 1.5},
                    {"guidance_start": float("nan")}, {"guidance_refresh": 0}):
        with pytest.raises(EMOInputError, match="guidance_"):
            GenerationSettings(**changes).validate()


class _RowCounter:
    """Forward pre-hook recording the batch of each Backbone call."""

    def __init__(self):
        self.batches = []

    def __call__(self, module, args, kwargs):
        self.batches.append(int(args[0].shape[0]))


def test_pipeline_runs_the_scheduled_rows(tiny_generation):
    pipe, inputs = tiny_generation
    counter = _RowCounter()
    handle = pipe.models.backbone.register_forward_pre_hook(counter, with_kwargs=True)
    try:
        settings = GenerationSettings(size=64, steps=5, frames_per_clip=4, guidance_end=0.4,
                                      guidance_refresh=1)
        list(pipe.generate_latents(*inputs, settings))
        full = list(counter.batches)
        counter.batches.clear()
        list(pipe.generate_latents(*inputs, settings.replace(guidance_end=1.0,
                                                             guidance_refresh=2)))
    finally:
        handle.remove()
    assert full == [3, 3, 1, 1, 1] * 2  # two clips of 4 frames (8 frames of audio)
    assert counter.batches == [3, 1, 3, 1, 3] * 2


@pytest.fixture(scope="module")
def tiny_generation():
    """A random tiny EMO pipeline and 8 frames of inputs (values do not matter here)."""
    from emo_core.audio.features import AudioFeatures
    from emo_core.models.emo_models import EMOModels
    from emo_core.models.presets import emo_component_configs
    from emo_core.pipeline.pipeline import EMOPipeline
    from emo_core.pipeline.reference import EncodedReference

    torch.manual_seed(0)
    models = EMOModels.from_configs(emo_component_configs("tiny"))
    pipe = EMOPipeline(models)
    cfg = models.audio_projection.config
    audio = AudioFeatures(torch.randn(8, cfg.seq_len, cfg.blocks, cfg.channels), 8, 25.0,
                          torch.zeros(1))
    reference = EncodedReference(torch.randn(1, 4, 8, 8), np.zeros((64, 64, 3), np.uint8))
    return pipe, (reference, audio, torch.ones(64, 64), 2.0)
