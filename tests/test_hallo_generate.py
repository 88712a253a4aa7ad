"""``generate`` with a converted Hallo checkpoint: an mp4 with exactly the audio's frame count;
EMO-only options are ignored with a warning, not an error."""

from __future__ import annotations

import json
import logging
import wave

import numpy as np
import pytest
import torch

from tests.fixture_sets import HALLO_FIXTURE

FIXTURE = HALLO_FIXTURE
pytestmark = pytest.mark.skipif(not (FIXTURE / "outputs.safetensors").is_file(),
                                reason=f"Hallo golden fixture folder {FIXTURE} is absent")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Converted checkpoint, the fixture's reference as PNG and its waveform as a WAV file."""
    from PIL import Image
    from safetensors.torch import load_file

    from emo_core.cli.cmd_convert_hallo import convert_hallo
    from emo_core.pipeline.hallo import HalloConditions

    root = tmp_path_factory.mktemp("hallo_generate")
    checkpoint = convert_hallo(FIXTURE / "pretrained_models", root / "hallo.safetensors",
                               json.loads((FIXTURE / "hallo_unet_kwargs.json").read_text()))
    inputs = load_file(str(FIXTURE / "inputs.safetensors"))
    pixels = ((inputs["ref_pixels"][0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255)
    Image.fromarray(pixels.to(torch.uint8).numpy()).save(root / "face.png")
    samples = (inputs["audio_waveform_16k"].numpy() * 32767).round().astype(np.int16)
    with wave.open(str(root / "speech.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.tobytes())
    masks = [[inputs[f"{r}_mask.{i}"][0] for i in range(4)] for r in ("full", "face", "lip")]
    conditions = HalloConditions(inputs["face_emb"], inputs["face_region"], *masks)
    return root, checkpoint, conditions


def _request(media, **changes):
    from emo_core.pipeline.run import GenerateRequest
    from emo_core.pipeline.settings import GenerationSettings

    root, checkpoint, conditions = media
    values = dict(checkpoint=checkpoint,
                  wav2vec=FIXTURE / "pretrained_models/wav2vec/wav2vec2-base-960h",
                  mediapipe=root, image=root / "face.png", audio=root / "speech.wav",
                  out=root / "out.mp4", settings=GenerationSettings(size=128, steps=2),
                  speed=None, hallo_conditions=conditions)
    values.update(changes)
    return GenerateRequest(**values)


def test_generate_with_hallo_checkpoint_gives_the_audio_frame_count(media, caplog):
    from emo_core.pipeline.run import generate_video
    from emo_core.video_io import read_video_frames

    calls = []
    with caplog.at_level(logging.WARNING):
        out = generate_video(_request(media, speed=3.0), progress=lambda d, t: calls.append((d, t)))
    frames = read_video_frames(out)
    assert frames.shape == (50, 128, 128, 3)  # 2.0 s at 25 fps: 4 clips of 16, cropped to 50
    assert calls[-1] == (8, 8)  # 4 clips x 2 steps
    assert frames.std() > 1.0  # a real picture, not a constant
    assert any("ignoring the speed input" in r.getMessage() for r in caplog.records)


def test_hallo_checkpoint_without_face_models_names_them(media):
    from emo_core.errors import EMOInputError
    from emo_core.pipeline.run import generate_video

    with pytest.raises(EMOInputError, match="insightface"):
        generate_video(_request(media, hallo_conditions=None, out=media[0] / "none.mp4"))
    assert not (media[0] / "none.mp4").exists()
