"""``python -m emo_core generate`` with a converted Hallo checkpoint, end to end as a user runs it:
the real face front-ends (tiny insightface ONNX models with the real signatures, real MediaPipe
landmarks on the bundled portrait), optional vocal separation (a tiny MDX-Net ONNX model), an mp4
with the exact frame count, EMO-only options warned about, missing inputs refused in preflight."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")  # test-only dependency (pinned in .ci/requirements-ci.txt)
pytest.importorskip("onnxruntime")

from emo_core.cli.main import EXIT_BAD_INPUT, main  # noqa: E402
from tests.hallo_media import (  # noqa: E402
    FIXTURE,
    FRAMES,
    HAS_FIXTURE,
    SAMPLES,
    WAV2VEC,
    convert_fixture,
    write_speech,
)
from tests.onnx_tiny_models import build_separator, write_face_models  # noqa: E402

pytestmark = pytest.mark.skipif(not HAS_FIXTURE,
                                reason=f"Hallo golden fixture folder {FIXTURE} is absent")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_hallo")
    separator = root / "audio_separator"
    separator.mkdir()
    return {
        "root": root,
        "checkpoint": convert_fixture(root / "hallo.safetensors"),
        "face_analysis": write_face_models(root / "face_analysis"),
        "separator": build_separator(separator / "Kim_Vocal_2.onnx", "half"),
        "audio": write_speech(root / "speech.wav"),
    }


def _args(media, out, *extra):
    return ["generate", "--checkpoint", str(media["checkpoint"]), "--wav2vec", str(WAV2VEC),
            "--mediapipe", str(SAMPLES / "mediapipe"),
            "--image", str(SAMPLES / "portrait_astronaut.png"), "--audio", str(media["audio"]),
            "--out", str(out), "--size", "128", "--steps", "1", *extra]


def test_generate_hallo_with_face_models_and_vocal_separation(media, caplog, capsys):
    from emo_core.video_io import read_video_frames

    out = media["root"] / "talking.mp4"
    with caplog.at_level(logging.INFO, logger="emo_core"):
        code = main(_args(media, out, "--face-analysis", str(media["face_analysis"]),
                          "--separate-vocals", str(media["separator"]), "--speed", "3",
                          "--frames-per-clip", "8"))
    assert code == 0, capsys.readouterr().err
    frames = read_video_frames(out)
    assert frames.shape == (FRAMES, 128, 128, 3)
    assert frames.std() > 1.0  # a picture, not a constant
    messages = [record.getMessage() for record in caplog.records]
    # both ONNX front-ends ran on the user's files, and the EMO-only options were only warned about
    assert any("recognizer glintr100.onnx" in m for m in messages), messages
    assert any("through Kim_Vocal_2.onnx" in m for m in messages), messages
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ignoring the speed input" in m for m in warnings), warnings
    assert any("frames_per_clip=8" in m for m in warnings), warnings


def test_hallo_conditions_come_from_the_face_models(media):
    """The embedding reaching the model is FaceEmbedder's on the image as loaded (non-zero: the
    tiny detector finds a face on the portrait), the masks are hallo_region_masks' at size/8."""
    from emo_core.face.embedding import FaceEmbedder
    from emo_core.image import load_image_file
    from emo_core.pipeline.hallo_run import build_hallo_conditions
    from emo_core.pipeline.run import GenerateRequest

    image = load_image_file(SAMPLES / "portrait_astronaut.png")
    request = GenerateRequest(checkpoint=media["checkpoint"], wav2vec=WAV2VEC,
                              mediapipe=SAMPLES / "mediapipe", image=Path("x.png"),
                              audio=media["audio"], out=Path("x.mp4"),
                              face_analysis=media["face_analysis"])
    conditions = build_hallo_conditions(image, request, 128)
    expected = FaceEmbedder(media["face_analysis"]).embed(image)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_array_equal(conditions.face_embedding[0].numpy(), expected)
    assert tuple(conditions.face_region.shape) == (1, 3, 128, 128)
    assert [m.numel() for m in conditions.full_masks] == [256, 64, 16, 4]
    assert 0.0 < float(conditions.face_region.mean()) < 1.0  # a face box, not the whole image


def test_separate_vocals_changes_what_wav2vec_hears(media):
    """The tiny model halves the mix: wav2vec gets 0.5 x 1.009 (compensate) of the audio."""
    import torch

    from emo_core.audio.waveform import load_audio_file, to_mono_16k
    from emo_core.pipeline.run import GenerateRequest, speech_waveform

    waveform, rate = load_audio_file(media["audio"])
    plain = GenerateRequest(checkpoint=media["checkpoint"], wav2vec=WAV2VEC, mediapipe=SAMPLES,
                            image=Path("x.png"), audio=media["audio"], out=Path("x.mp4"))
    assert speech_waveform(plain, waveform, rate) == (waveform, rate)
    vocals, vocal_rate = speech_waveform(
        GenerateRequest(**{**plain.__dict__, "separate_vocals": media["separator"]}), waveform, rate)
    original = to_mono_16k(waveform, rate)
    assert vocal_rate == 16000 and vocals.shape == original.shape
    # The excerpt starts and ends with a hard cut: MDX drops its energy below 17 Hz (the model's
    # first 3 bins), so the gain is measured away from the ends, within 1 % (measured 0.502).
    middle = slice(1600, -1600)
    gain = float(vocals[middle] @ original[middle] / (original[middle] @ original[middle]))
    assert gain == pytest.approx(0.5 * 1.009, rel=0.01)
    assert float(torch.corrcoef(torch.stack([vocals[middle], original[middle]]))[0, 1]) > 0.99


@pytest.mark.parametrize("extra,words", [
    ((), ["--face-analysis", "required", "fudan-generative-ai/hallo"]),
    (("--face-analysis", "{root}/nowhere"), ["--face-analysis", "does not exist",
                                             "fudan-generative-ai/hallo"]),
    (("--face-analysis", "{face_analysis}", "--separate-vocals", "{root}/Kim_Vocal_2.onnx"),
     ["--separate-vocals", "does not exist", "audio_separator"]),
], ids=["no face models", "missing face folder", "missing separator"])
def test_missing_hallo_inputs_are_refused_in_one_line(media, capsys, extra, words):
    out = media["root"] / "refused.mp4"
    extra = [e.format(root=media["root"], face_analysis=media["face_analysis"]) for e in extra]
    code = main(_args(media, out, *extra))
    message = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT, message
    assert len(message.splitlines()) == 1, message
    for word in words:
        assert word in message, message
    assert not out.exists()


def test_hallo_sampling_takes_steps_and_a_changed_cfg_and_warns_only_about_foreign_values():
    """Hallo's own values (as the example workflow spells them) and EMO's defaults are silent;
    anything else is named with what Hallo uses instead. guidance_reference is the joint CFG
    scale only when changed from the EMO default."""
    from types import SimpleNamespace

    from emo_core.io.hallo import HALLO_SAMPLING
    from emo_core.pipeline.hallo_run import hallo_sampling, ignored_settings
    from emo_core.pipeline.settings import GenerationSettings

    models = SimpleNamespace(sampling=HALLO_SAMPLING)
    plain = hallo_sampling(models, GenerationSettings(steps=7))
    assert (plain.steps, plain.guidance_scale, plain.motion_scale) == (7, 3.5, (1.0, 1.0, 1.0))
    assert plain.scheduler["prediction_type"] == "v_prediction"
    assert hallo_sampling(models, GenerationSettings(guidance_reference=5.0)).guidance_scale == 5.0
    hallos = GenerationSettings(guidance_mode="joint", frames_per_clip=16, motion_frames=2,
                                first_clip_motion="reference", scheduler="ddim-vpred-trailing")
    assert ignored_settings(GenerationSettings(), HALLO_SAMPLING) == []
    assert ignored_settings(hallos, HALLO_SAMPLING) == []
    foreign = ignored_settings(GenerationSettings(frames_per_clip=8, scheduler="unipc"),
                               HALLO_SAMPLING)
    assert [w.split("=")[0] for w in foreign] == ["frames_per_clip", "scheduler"], foreign
