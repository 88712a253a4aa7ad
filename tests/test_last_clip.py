"""The last clip denoises only the frames it keeps (issue 22), for EMO and Hallo.

Counted where the cost is: a forward pre-hook on the Backbone records the clip frames of every
denoiser call (``sample: (b, f, 4, h, w)``), so a padded last clip would show up as ``f`` frames
where the video keeps fewer. Full clips must not change at all (the layout of every clip but the
last is the same), so the first clips are compared bit for bit with the padded layout's. Hallo's
released loop pads the last clip; ``HalloSampling.pad_last_clip`` reproduces it (the golden test
``test_hallo_equivalence.test_two_chained_clips_match_hallo`` runs that path), and the default
generates the kept frames only. Decision and measured differences: docs/ARCHITECTURE.md ("Last
clip").
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from emo_core.pipeline.clips import clip_spans
from tests.fixture_sets import fixture_set

HALLO_FIXTURE = fixture_set("hallo_tiny")


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every test here on one torch thread (see conftest.one_torch_thread): bit-equality checks."""


class FrameCounter:
    """Forward pre-hook on a Backbone: the clip frames (``sample.shape[1]``) of every call."""

    def __init__(self, backbone):
        self.frames: list[int] = []
        self.handle = backbone.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, _module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self.frames.append(int(sample.shape[1]))

    def remove(self) -> None:
        self.handle.remove()


@pytest.mark.parametrize("frames_per_clip", [1, 12, 16])
@pytest.mark.parametrize("total", [1, 3, 11, 12, 13, 24, 75, 100, 101])
def test_clip_spans_generate_the_kept_frames_only(total, frames_per_clip):
    spans = clip_spans(total, frames_per_clip)
    assert all(span.length == span.keep for span in spans)
    assert sum(span.length for span in spans) == total  # no frame denoised and dropped
    assert [span.start for span in spans] == list(range(0, total, frames_per_clip))
    padded = clip_spans(total, frames_per_clip, pad_last=True)
    assert [s.length for s in padded] == [frames_per_clip] * len(spans)
    # Every clip but the last has the same layout either way (so its numbers cannot change).
    assert spans[:-1] == padded[:-1]
    assert (spans[-1].start, spans[-1].keep) == (padded[-1].start, padded[-1].keep)


def _emo_run(demo_weights, fixtures, steps: int = 2):
    from emo_core.audio.features import extract_audio_features
    from emo_core.audio.waveform import load_audio_file
    from emo_core.io.emo_checkpoint import load_emo_checkpoint
    from emo_core.io.wav2vec import load_wav2vec
    from emo_core.pipeline.pipeline import EMOPipeline
    from emo_core.pipeline.reference import encode_reference
    from emo_core.pipeline.settings import GenerationSettings

    models = load_emo_checkpoint(demo_weights / "emo.safetensors")
    waveform, rate = load_audio_file(fixtures("speech_arctic_a0007.wav"))
    audio = extract_audio_features(load_wav2vec(demo_weights / "wav2vec2"), waveform, rate, 25.0)
    image = np.asarray(Image.open(fixtures("portrait_astronaut.png")).convert("RGB")
                       .resize((64, 64)))
    mask = torch.zeros(64, 64)
    mask[8:40, 16:48] = 1
    return (EMOPipeline(models), encode_reference(models, image), audio, mask,
            GenerationSettings(size=64, steps=steps))


def _padded(family):
    """``family`` with the padded last clip of the earlier releases (for comparison only)."""
    family.clip_spans = lambda total, settings: clip_spans(total, settings.frames_per_clip,
                                                           pad_last=True)
    return family


def test_emo_last_clip_denoises_no_frame_it_drops(demo_weights, fixtures):
    pipeline, reference, audio, mask, settings = _emo_run(demo_weights, fixtures)
    counter = FrameCounter(pipeline.models.backbone)
    try:
        chunks = list(pipeline.generate_latents(reference, audio, mask, 2.0, settings))
    finally:
        counter.remove()
    assert audio.num_frames == 100  # 4.0 s at 25 fps: 8 clips of 12 + 4
    assert [c.shape[0] for c in chunks] == [12] * 8 + [4]
    # Every step of every clip: exactly the frames the video keeps.
    assert counter.frames == [12] * (8 * settings.steps) + [4] * settings.steps
    assert sum(counter.frames) == audio.num_frames * settings.steps

    from emo_core.families import family_of
    from emo_core.pipeline.pipeline import EMOPipeline

    padded_pipeline = EMOPipeline(pipeline.models, family=_padded(family_of(pipeline.models)))
    counter = FrameCounter(pipeline.models.backbone)
    try:
        padded = list(padded_pipeline.generate_latents(reference, audio, mask, 2.0, settings))
    finally:
        counter.remove()
    assert counter.frames == [12] * (9 * settings.steps)  # what the padded layout wasted
    for got, before in zip(chunks[:-1], padded[:-1], strict=True):
        assert torch.equal(got, before)  # full clips: bit for bit the same
    assert chunks[-1].shape == padded[-1].shape == (4, 4, 8, 8)
    # The kept frames start from the same noise (see test_noise_of_a_short_clip_...); what is
    # left is temporal attention over 4 + 4 instead of 4 + 12 frames (docs/ARCHITECTURE.md).
    difference = float((chunks[-1] - padded[-1]).abs().max())
    print(f"EMO demo weights: last clip kept frames, trimmed vs padded: max |diff| {difference:.3g}"
          f" (latents max {float(padded[-1].abs().max()):.3g})")
    assert torch.isfinite(chunks[-1]).all()


def test_noise_of_a_short_clip_is_the_first_frames_of_a_whole_clips(hallo_models_or_none):
    """Same seed, same starting noise for every kept frame whatever the last clip's length: EMO
    (frame-major draw) and Hallo (its ``(b, c, f, h, w)`` draw taken from a whole clip)."""
    from emo_core.families.emo import EMOFamily
    from emo_core.families.hallo import HalloFamily

    families = [(EMOFamily(), 12)]
    if hallo_models_or_none is not None:
        families.append((HalloFamily(hallo_models_or_none), 16))
    for family, whole in families:
        def draw(frames, family=family):
            return family.initial_noise(torch.Generator().manual_seed(7), (1, frames, 4, 8, 8))

        full = draw(whole)
        for frames in (1, 4, whole - 1):
            assert torch.equal(draw(frames), full[:, :frames]), (family.title, frames)


@pytest.fixture(scope="module")
def hallo_models_or_none(request):
    """The converted Hallo checkpoint when the fixture exists, else None."""
    if not (HALLO_FIXTURE / "outputs.safetensors").is_file():
        return None
    return request.getfixturevalue("hallo")[0]


@pytest.fixture(scope="module")
def hallo(tmp_path_factory):
    """The hallo_tiny fixture's converted checkpoint, its golden inputs and conditions."""
    if not (HALLO_FIXTURE / "outputs.safetensors").is_file():
        pytest.skip(f"Hallo golden fixture folder {HALLO_FIXTURE} is absent")
    from safetensors.torch import load_file

    from emo_core.cli.cmd_convert_hallo import convert_hallo
    from emo_core.io.emo_checkpoint import load_emo_checkpoint
    from emo_core.pipeline.hallo import HalloConditions

    out = tmp_path_factory.mktemp("hallo_last_clip") / "hallo.safetensors"
    convert_hallo(HALLO_FIXTURE / "pretrained_models", out, unet_kwargs=json.loads(
        (HALLO_FIXTURE / "hallo_unet_kwargs.json").read_text()))
    inputs = load_file(str(HALLO_FIXTURE / "inputs.safetensors"))
    outputs = load_file(str(HALLO_FIXTURE / "outputs.safetensors"))
    masks = [[inputs[f"{r}_mask.{i}"] for i in range(4)] for r in ("full", "face", "lip")]
    conditions = HalloConditions(inputs["face_emb"], inputs["face_region"], *masks)
    return load_emo_checkpoint(out), inputs, outputs, conditions


def _hallo_latents(models, inputs, outputs, conditions, pad_last_clip: bool):
    """20 frames (16 + 4) through the one pipeline with the Hallo family, 4 steps: (kept latents
    per clip, Backbone frames per call, VAE encodes during sampling)."""
    from emo_core.audio.features import AudioFeatures
    from emo_core.families.hallo import HalloFamily, HalloSampling
    from emo_core.families.hallo_parts import encode_pixels
    from emo_core.pipeline.pipeline import EMOPipeline
    from emo_core.pipeline.reference import EncodedReference
    from emo_core.pipeline.settings import GenerationSettings

    scheduler = json.loads((HALLO_FIXTURE / "scheduler_config.json").read_text())
    sampling = HalloSampling(steps=4, motion_scale=(1.0, 1.0, 1.0), scheduler=scheduler,
                             pad_last_clip=pad_last_clip)
    family = HalloFamily(models, sampling=sampling)
    family.configs = {**family.configs, "sampling": {
        **family.sampling, "clip_frames": 16, "motion_frames": 2}}
    pixels = inputs["ref_pixels"]
    image = ((pixels[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    reference = EncodedReference(encode_pixels(models.vae, pixels), image.numpy())
    audio = AudioFeatures(outputs["audio_emb_windows_all"], 20, 25.0, torch.zeros(0), "hallo")
    settings = GenerationSettings(steps=4, seed=42, size=pixels.shape[-1])
    counter, encodes = FrameCounter(models.backbone), []
    hook = models.vae.encoder.register_forward_pre_hook(lambda *_: encodes.append(1))
    try:
        kept = list(EMOPipeline(models, family=family).generate_latents(
            reference, audio, None, None, settings, conditions=conditions))
    finally:
        counter.remove()
        hook.remove()
    return kept, counter.frames, len(encodes)


def test_hallo_last_clip_denoises_no_frame_it_drops(hallo):
    models, inputs, outputs, conditions = hallo
    kept, frames, encodes = _hallo_latents(models, inputs, outputs, conditions, False)
    assert [k.shape[0] for k in kept] == [16, 4]
    assert frames == [16] * 4 + [4] * 4  # 4 steps per clip, CFG rows in one call
    # The motion frames are decoded and re-encoded between clips only, not after the last one.
    assert encodes == 1

    exact, exact_frames, exact_encodes = _hallo_latents(models, inputs, outputs, conditions, True)
    assert exact_frames == [16] * 8 and exact_encodes == 1  # Hallo's own layout: 12 dropped
    assert torch.equal(kept[0], exact[0])  # the full clip: bit for bit the same
    # The padded layout is Hallo's golden (the kept frames of clip 1); the shorter clip's kept
    # frames differ only by what temporal attention over 2 + 4 instead of 2 + 16 frames changes.
    golden = outputs["e2e_final_latents_clip1"].permute(0, 2, 1, 3, 4)[0, :4]
    assert float((exact[1] - golden).abs().max()) < 1e-3
    difference = float((kept[1] - golden).abs().max())
    print(f"Hallo tiny: last clip kept frames, trimmed vs Hallo's padded golden: max |diff| "
          f"{difference:.3g}, mean {float((kept[1] - golden).abs().mean()):.3g} (latents max "
          f"{float(golden.abs().max()):.3g})")
    assert 0 < difference < 0.5 * float(golden.abs().max())
