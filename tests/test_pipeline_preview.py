"""The pipeline's ``preview`` callback (what the EMO Sampler renders with ComfyUI's previewer):
once per denoising step, just before that step's progress report, with the clip's clean estimate
``(f, 4, h, w)``; watching never changes the result. The real-server side (previews over the
websocket) is tests/test_nodes_previews.py."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from tests.test_pipeline_generate import _tiny_run

CLIPS = 2  # the first two clips of the 4 s fixture (12 frames each) are enough


@pytest.fixture(scope="module")
def tiny_run(demo_weights, one_torch_thread):
    from tests.conftest import fixture_path

    return _tiny_run(demo_weights, fixture_path, steps=2)


def _first_clips(pipeline, reference, audio, mask, settings, **callbacks):
    clips = pipeline.generate_latents(reference, audio, mask, 2.0, settings, **callbacks)
    taken = list(itertools.islice(clips, CLIPS))
    clips.close()
    return taken


def test_preview_per_step_before_its_progress_and_no_effect_on_the_result(tiny_run):
    pipeline, reference, audio, mask, settings = tiny_run
    plain = _first_clips(pipeline, reference, audio, mask, settings)
    events: list = []
    watched = _first_clips(
        pipeline, reference, audio, mask, settings,
        progress=lambda done, total: events.append(("progress", done)),
        preview=lambda x0: events.append(("preview", tuple(x0.shape), x0.clone())))
    assert all(torch.equal(a, b) for a, b in zip(plain, watched, strict=True))
    previews = [e for e in events if e[0] == "preview"]
    assert len(previews) == settings.steps * CLIPS
    side = settings.size // 8
    assert {p[1] for p in previews} == {(settings.frames_per_clip, 4, side, side)}
    # Each preview is followed by the progress report of its step (units 2, 3 of clip 1: unit 1
    # is the clip's preparation, which has no latent to show).
    per_clip = settings.steps + 1
    step_units = [c * per_clip + 1 + s + 1 for c in range(CLIPS) for s in range(settings.steps)]
    following = [events[i + 1] for i, e in enumerate(events) if e[0] == "preview"]
    assert following == [("progress", unit) for unit in step_units]
    # DDIM gives its clean estimate x0, not the noisy sample that ends the step.
    assert not torch.equal(previews[settings.steps - 1][2][:watched[0].shape[0]], watched[0])


def test_schedulers_without_a_clean_estimate_preview_the_current_sample(tiny_run):
    pipeline, reference, audio, mask, settings = tiny_run
    settings = dataclasses.replace(settings, scheduler="dpmpp-2m")
    shown: list = []
    (first,) = _first_clips(pipeline, reference, audio, mask, settings,
                            preview=lambda x0: shown.append(x0.clone()))[:1]
    assert len(shown) == settings.steps * CLIPS
    # DPM-Solver++ returns no pred_original_sample: the last preview of a clip is its result.
    assert torch.equal(shown[settings.steps - 1][:first.shape[0]].to(first.dtype), first)
