"""``generate`` with a converted Hallo2 checkpoint: the mp4 has the audio's frame count and its
frames are Hallo2's (masked motion frames, Hallo2's draw order), not Hallo's on the same weights.

The fixture's reference image is written as a PNG (8-bit: the golden's float pixels rounded) and
its driving audio is used as is. H.264 alone moves these noisy tiny-model frames by ~10.7 levels
on average, so the check is the mean difference to the golden frames against that floor (the
golden frames through the same writer): measured 0.003 levels above it; the same weights run as
Hallo (what a wrong dispatch would give) are 23 levels above it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.hallo2_fixture import hallo2_fixture

FIXTURE = hallo2_fixture()
pytestmark = pytest.mark.skipif(not (FIXTURE / "outputs.safetensors").is_file(),
                                reason=f"Hallo2 golden fixture folder {FIXTURE} is absent")


@pytest.fixture(scope="module")
def media(tmp_path_factory, one_torch_thread):
    from PIL import Image
    from safetensors.torch import load_file

    from emo_core.cli.cmd_convert_hallo import convert_hallo
    from emo_core.pipeline.hallo import HalloConditions

    root = tmp_path_factory.mktemp("hallo2_generate")
    kwargs = json.loads((FIXTURE / "hallo_unet_kwargs.json").read_text())
    checkpoint = convert_hallo(FIXTURE / "pretrained_models", root / "hallo2.safetensors",
                               kwargs)
    inputs = load_file(str(FIXTURE / "inputs.safetensors"))
    pixels = ((inputs["ref_pixels"][0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255)
    Image.fromarray(pixels.to(torch.uint8).numpy()).save(root / "face.png")
    masks = [[inputs[f"{r}_mask.{i}"][0] for i in range(4)] for r in ("full", "face", "lip")]
    conditions = HalloConditions(inputs["face_emb"], inputs["face_region"], *masks)
    return root, checkpoint, conditions


def _generate(media, steps: int):
    from emo_core.pipeline.run import GenerateRequest, generate_video
    from emo_core.pipeline.settings import GenerationSettings
    from emo_core.video_io import read_video_frames

    root, checkpoint, conditions = media
    out = generate_video(GenerateRequest(
        checkpoint=checkpoint,
        wav2vec=FIXTURE / "pretrained_models/wav2vec/wav2vec2-base-960h", mediapipe=root,
        image=root / "face.png", audio=FIXTURE / "driving_audio.wav",
        out=root / "hallo2.mp4", settings=GenerationSettings(size=128, steps=steps, seed=42),
        speed=None, hallo_conditions=conditions))
    return read_video_frames(out)


def test_generate_with_a_hallo2_checkpoint_makes_hallo2s_frames(media):
    import wave

    from safetensors.torch import load_file

    from emo_core.pipeline.video import Mp4Writer
    from emo_core.video_io import read_video_frames

    outputs = load_file(str(FIXTURE / "outputs.safetensors"))
    clips = sum(1 for k in outputs if k.startswith("e2e_video_clip"))
    steps = outputs["e2e_step_latents_clip0"].shape[0]
    with wave.open(str(FIXTURE / "driving_audio.wav"), "rb") as audio:
        frames = -(-audio.getnframes() * 25 // audio.getframerate())  # ceil(seconds x 25)
    golden = torch.cat([outputs[f"e2e_video_clip{c}"][0] for c in range(clips)], dim=1)
    golden = (golden.permute(1, 2, 3, 0) * 255)[:frames]  # (F', H, W, 3) in 8-bit levels
    video = _generate(media, steps)
    assert video.shape == (frames, 128, 128, 3)
    floor_file = media[0] / "golden.mp4"
    with Mp4Writer(floor_file, 25, 128, 128, audio=None) as writer:
        writer.write(golden.round().clamp(0, 255).to(torch.uint8).numpy())
    floor = _mean_error(read_video_frames(floor_file), golden)
    error = _mean_error(video[:golden.shape[0]], golden)
    assert error < floor + 0.5, (error, floor)


def _mean_error(video: np.ndarray, golden: torch.Tensor) -> float:
    return float(np.abs(video.astype(np.float64) - golden.double().numpy()).mean())
