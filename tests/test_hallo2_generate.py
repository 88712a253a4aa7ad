"""``generate`` with a converted Hallo2 checkpoint runs the Hallo2 family end to end: the mp4 has
the audio's exact frame count and its frames are those of ``Hallo2Family``'s own front-end and
chaining through the one pipeline (which ``test_hallo2_equivalence.py`` holds to Hallo2's
goldens), written by the same mp4 writer.

A short speech clip (0.92 s, 23 frames: two clips, the second cropped) keeps the run small on any
fixture set, one with more than 60 s of audio included. The same tensors converted as Hallo
give other frames (measured: 30.7 levels apart on average, up to 250), so a ``generate`` that
ran Hallo's chaining on a Hallo2 checkpoint fails the equality.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.hallo2_fixture import hallo2_fixture
from tests.hallo_media import FRAMES, write_speech

FIXTURE = hallo2_fixture()
WAV2VEC = FIXTURE / "pretrained_models/wav2vec/wav2vec2-base-960h"
pytestmark = pytest.mark.skipif(not (FIXTURE / "outputs.safetensors").is_file(),
                                reason=f"Hallo2 golden fixture folder {FIXTURE} is absent")
SIZE, STEPS, SEED = 128, 2, 42


@pytest.fixture(scope="module")
def media(tmp_path_factory, one_torch_thread):
    """Converted Hallo2 checkpoint, the fixture's reference as an 8-bit PNG, a speech clip and
    the fixture's face conditions (no insightface models needed)."""
    from PIL import Image
    from safetensors.torch import load_file

    from emo_core.cli.cmd_convert_hallo import convert_hallo
    from emo_core.pipeline.hallo import HalloConditions

    root = tmp_path_factory.mktemp("hallo2_generate")
    checkpoint = convert_hallo(FIXTURE / "pretrained_models", root / "hallo2.safetensors",
                               json.loads((FIXTURE / "hallo_unet_kwargs.json").read_text()))
    inputs = load_file(str(FIXTURE / "inputs.safetensors"))
    pixels = ((inputs["ref_pixels"][0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255)
    Image.fromarray(pixels.to(torch.uint8).numpy()).save(root / "face.png")
    masks = [[inputs[f"{r}_mask.{i}"][0] for i in range(4)] for r in ("full", "face", "lip")]
    conditions = HalloConditions(inputs["face_emb"], inputs["face_region"], *masks)
    return root, checkpoint, write_speech(root / "speech.wav"), conditions


def _settings():
    from emo_core.pipeline.settings import GenerationSettings

    return GenerationSettings(size=SIZE, steps=STEPS, seed=SEED)


def _cli_video(media) -> np.ndarray:
    from emo_core.pipeline.run import GenerateRequest, generate_video
    from emo_core.video_io import read_video_frames

    root, checkpoint, speech, conditions = media
    out = generate_video(GenerateRequest(
        checkpoint=checkpoint, wav2vec=WAV2VEC, mediapipe=root, image=root / "face.png",
        audio=speech, out=root / "cli.mp4", settings=_settings(), speed=None,
        hallo_conditions=conditions))
    return read_video_frames(out)


def _family_video(media) -> np.ndarray:
    """The Hallo2 family's own parts, called directly, into the same mp4 writer."""
    from PIL import Image

    from emo_core.audio.waveform import load_audio_file
    from emo_core.families import family_of
    from emo_core.families.hallo2 import Hallo2Family
    from emo_core.io.emo_checkpoint import load_emo_checkpoint
    from emo_core.io.wav2vec import load_wav2vec
    from emo_core.pipeline.pipeline import EMOPipeline
    from emo_core.pipeline.reference import encode_reference
    from emo_core.pipeline.video import Mp4Writer
    from emo_core.video_io import read_video_frames

    root, checkpoint, speech, conditions = media
    models = load_emo_checkpoint(checkpoint)
    family = family_of(models)
    assert type(family) is Hallo2Family
    waveform, rate = load_audio_file(speech)
    audio = family.audio_features(load_wav2vec(WAV2VEC), waveform, rate, 25.0)
    assert audio.front_end == "hallo2" and audio.num_frames == FRAMES
    reference = encode_reference(models, np.asarray(Image.open(root / "face.png")))
    frames = EMOPipeline(models, family=family).generate_frames(
        reference, audio, None, None, _settings(), conditions=conditions)
    with Mp4Writer(root / "family.mp4", 25, SIZE, SIZE, audio=(waveform, rate)) as writer:
        for chunk in frames:
            writer.write(chunk)
    return read_video_frames(root / "family.mp4")


def test_generate_with_a_hallo2_checkpoint_runs_the_hallo2_family(media):
    cli = _cli_video(media)
    assert cli.shape == (FRAMES, SIZE, SIZE, 3)  # ceil(0.92 s x 25): the exact frame count
    np.testing.assert_array_equal(cli, _family_video(media))
