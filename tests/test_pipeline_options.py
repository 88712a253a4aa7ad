"""`generate` options beyond the defaults: paste-back into the full image, speed from a driving
video, speed keyframes. Tiny demo weights, 64 px, 1-2 steps."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from emo_core.cli.main import main
from emo_core.face.crop import face_crop_box
from emo_core.face.detect import find_face
from emo_core.pipeline.run import GenerateRequest, _speed_curve
from emo_core.pipeline.video import Mp4Writer
from tests.test_pipeline_generate import decoded_frames, generate_args


def padded_portrait(fixtures, tmp_path, size=(600, 420), at=(60, 20)):
    canvas = Image.new("RGB", size, (40, 90, 60))
    canvas.paste(Image.open(fixtures("portrait_astronaut.png")).convert("RGB"), at)
    path = tmp_path / "wide.png"
    canvas.save(path)
    return path, np.asarray(canvas)


def test_paste_back_keeps_the_full_image_outside_the_crop(demo_weights, fixtures, tmp_path):
    image_path, original = padded_portrait(fixtures, tmp_path)
    out = tmp_path / "pasted.mp4"
    args = generate_args(demo_weights, fixtures, out, "--paste-back", "--steps", "1")
    args[args.index("--image") + 1] = str(image_path)
    assert main(args) == 0
    frames = decoded_frames(out)
    assert frames.shape[1:] == (420, 600, 3)  # full original size, not the 64 px crop
    face = find_face(original, fixtures("blaze_face_short_range.tflite").parent)
    crop = face_crop_box(face, original.shape[:2], out_size=64)
    outside = np.ones(original.shape[:2], bool)
    outside[max(crop.y0, 0):crop.y0 + crop.size, max(crop.x0, 0):crop.x0 + crop.size] = False
    error_outside = np.abs(frames[5].astype(int) - original).mean(axis=2)[outside].mean()
    face_region = (slice(face.y, face.y + face.h), slice(face.x, face.x + face.w))
    error_face = np.abs(frames[5].astype(int) - original)[face_region].mean()
    # Outside the crop only H.264 (crf 18) touches the pixels: a few levels at most. Inside, the
    # random demo weights paint noise, far from the photo: that proves the paste happened.
    assert error_outside < 3.0
    assert error_face > 20.0


def _rotating_video(fixtures, path, degrees_per_frame=3.0, frames=30, fps=25.0):
    portrait = Image.open(fixtures("portrait_astronaut.png")).convert("RGB")
    center = (177 + 95 / 2, 82 + 95 / 2)  # rotate about the face, as a turning head does
    with Mp4Writer(path, fps, 512, 512) as writer:
        for i in range(frames):
            frame = portrait.rotate(i * degrees_per_frame, center=center,
                                    resample=Image.Resampling.BICUBIC)
            writer.write(np.asarray(frame)[None])
    return path


def test_speed_from_driving_video_measures_its_rotation(fixtures, tmp_path):
    video = _rotating_video(fixtures, tmp_path / "drive.mp4", degrees_per_frame=3.0)
    request = GenerateRequest(checkpoint=None, wav2vec=None,
                              mediapipe=fixtures("blaze_face_short_range.tflite").parent,
                              image=None, audio=None, out=tmp_path / "x.mp4", speed=None,
                              speed_video=video)
    speeds = _speed_curve(request, num_frames=50, fps=25.0)
    assert speeds.shape == (50,)
    # the video turns 3 deg/frame at the same fps; MediaPipe's pose is good to ~1.5 deg/frame
    assert abs(float(speeds.median()) - 3.0) < 1.5


def test_speed_keyframes_reach_the_pipeline(fixtures, tmp_path):
    request = GenerateRequest(checkpoint=None, wav2vec=None, mediapipe=None, image=None,
                              audio=None, out=tmp_path / "x.mp4", speed=None,
                              speed_keyframes="0:1.0, 2:5.0")
    speeds = _speed_curve(request, num_frames=75, fps=25.0)
    assert torch.allclose(speeds[[0, 25, 50, 74]].float(),
                          torch.tensor([1.0, 3.0, 5.0, 5.0]), atol=1e-5)


def test_generate_with_driving_video_and_keyframes(demo_weights, fixtures, tmp_path):
    video = _rotating_video(fixtures, tmp_path / "drive.mp4", frames=10)
    for name, extra in (("v", ("--speed-from-video", str(video))),
                        ("k", ("--speed-keyframes", "0:1, 3:8"))):
        out = tmp_path / f"{name}.mp4"
        assert main(generate_args(demo_weights, fixtures, out, "--steps", "1", *extra)) == 0
        assert decoded_frames(out).shape[0] == 100


def test_style_lora_through_generate(demo_weights, fixtures, tmp_path):
    """--style-checkpoint/--base-checkpoint/--lora reach the models: strength 0 gives a
    bit-identical video to no style at all; strength 1 changes it."""
    from safetensors.torch import save_file

    from emo_core.models.presets import unet_config
    from tests.test_style_deltas import make_lora, random_unet, write_sd15_file

    config = unet_config("tiny")  # the demo weights' UNet layout
    base = write_sd15_file(tmp_path / "base.safetensors", random_unet(config, 1))
    style = write_sd15_file(tmp_path / "style.safetensors", random_unet(config, 2))
    lora = tmp_path / "lora.safetensors"
    save_file(make_lora(config)[0], str(lora))
    style_args = ("--style-checkpoint", str(style), "--base-checkpoint", str(base),
                  "--lora", f"{lora}:0.8")
    runs = {}
    for name, extra in (("plain", ()), ("zero", (*style_args, "--style-strength", "0")),
                        ("full", style_args)):
        out = tmp_path / f"{name}.mp4"
        args = generate_args(demo_weights, fixtures, out, "--steps", "1", *extra)
        args[args.index("--audio") + 1] = str(fixtures("speech_arctic_a0007.wav"))
        assert main(args) == 0
        runs[name] = decoded_frames(out)
    assert np.array_equal(runs["plain"], runs["zero"])
    assert not np.array_equal(runs["plain"], runs["full"])
