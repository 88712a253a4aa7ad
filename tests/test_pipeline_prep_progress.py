"""Progress and interrupt during the prep phase (issue 13 item 5): before this, nothing was
reported until the first denoising step ended (~50 s on a busy CPU) and an interrupt there took
18 s. Now the host hears about the work before any model runs and after ReferenceNet, and a
cancel (or an exception raised from the progress callback, which is how ComfyUI interrupts) lands
before the next model call. Model calls are counted with forward pre-hooks."""

from __future__ import annotations

import pytest

from emo_core.errors import EMOCancelled
from tests.test_pipeline_generate import _tiny_run


class Interrupted(Exception):
    """What a host raises from its progress callback (ComfyUI: InterruptProcessingException)."""


def _record_calls(modules: dict, events: list):
    """Append the module's name to ``events`` every time one of ``modules`` starts a forward."""
    return [module.register_forward_pre_hook(lambda *_, name=name: events.append(name))
            for name, module in modules.items()]


def test_progress_comes_before_the_first_step_and_interrupt_lands_within_one_model_call(
        demo_weights, fixtures):
    pipeline, reference, audio, mask, settings = _tiny_run(demo_weights, fixtures, steps=2)
    models = pipeline.models
    events: list = []
    hooks = _record_calls({"reference_net": models.reference_net, "backbone": models.backbone},
                          events)
    try:
        first_clip = pipeline.generate_latents(
            reference, audio, mask, 2.0, settings,
            progress=lambda done, total: events.append(("progress", done, total)))
        next(first_clip)
        first_clip.close()
        # progress(0) before ReferenceNet, (1) after it: both before the first Backbone step.
        steps = settings.steps + 1
        clips = -(-audio.num_frames // settings.frames_per_clip)
        total = steps * clips
        assert events[:5] == [("progress", 0, total), "reference_net", ("progress", 1, total),
                              "backbone", ("progress", 2, total)], events[:6]

        # A host interrupt raised from the progress callback while ReferenceNet's pass is
        # reported stops the run before the Backbone ever runs.
        events.clear()

        def interrupt_after_reference(done, _total):
            events.append(("progress", done))
            if "reference_net" in events:
                raise Interrupted

        with pytest.raises(Interrupted):
            list(pipeline.generate_latents(reference, audio, mask, 2.0, settings,
                                           progress=interrupt_after_reference))
        assert events == [("progress", 0), "reference_net", ("progress", 1)], events

        # The cancel callback is asked before ReferenceNet too: nothing runs at all.
        events.clear()
        with pytest.raises(EMOCancelled, match="before clip 1"):
            list(pipeline.generate_latents(reference, audio, mask, 2.0, settings,
                                           cancel=lambda: True))
        assert events == []
    finally:
        for hook in hooks:
            hook.remove()


def test_audio_features_report_each_chunk_and_stop_before_the_next(demo_weights, fixtures):
    from emo_core.audio.features import extract_audio_features
    from emo_core.audio.waveform import load_audio_file
    from emo_core.io.wav2vec import load_wav2vec

    wav2vec = load_wav2vec(demo_weights / "wav2vec2")
    waveform, rate = load_audio_file(fixtures("speech_arctic_a0007.wav"))  # 4.0 s
    events: list = []
    hooks = _record_calls({"wav2vec": wav2vec.encoder}, events)
    try:
        # 1 s chunks: four transformer calls, each announced before and reported after.
        extract_audio_features(wav2vec, waveform, rate, 25.0, chunk_seconds=1.0,
                               progress=lambda done, total: events.append((done, total)))
        assert events == [(0, 4), "wav2vec", (1, 4), "wav2vec", (2, 4), "wav2vec", (3, 4),
                          "wav2vec", (4, 4)], events
        events.clear()
        with pytest.raises(EMOCancelled, match="before chunk 2"):
            extract_audio_features(wav2vec, waveform, rate, 25.0, chunk_seconds=1.0,
                                   cancel=lambda: "wav2vec" in events)
        assert events == ["wav2vec"]  # the interrupt came within one model call
    finally:
        for hook in hooks:
            hook.remove()
