"""CLI ``generate`` with the converted EchoMimic acc fixture on the bundled portrait and speech:
exact frame count (round(seconds x fps)) at 24 and 25 fps and an audio track, without any
``--wav2vec`` (whisper is inside the checkpoint)."""

from __future__ import annotations

import pytest

from tests.conftest import fixture_path
from tests.echomimic_fixture import convert_acc_fixture, skip_without_fixture
from tests.test_pipeline_generate import video_facts

pytestmark = skip_without_fixture


@pytest.fixture(scope="module")
def acc_checkpoint(tmp_path_factory, one_torch_thread):
    return convert_acc_fixture(tmp_path_factory.mktemp("acc") / "echomimic_acc.safetensors")


@pytest.mark.parametrize(("fps", "frames"), [(24, 96), (25, 100)])  # the clip is 4.0 s
def test_generate_exact_frames_and_audio(acc_checkpoint, tmp_path, capsys, fps, frames):
    from emo_core.cli.main import main

    out = tmp_path / f"echo_{fps}.mp4"
    code = main(["generate", "--checkpoint", str(acc_checkpoint),
                 "--mediapipe", str(fixture_path("blaze_face_short_range.tflite").parent),
                 "--image", str(fixture_path("portrait_astronaut.png")),
                 "--audio", str(fixture_path("speech_arctic_a0007.wav")),
                 "--out", str(out), "--size", "128", "--fps", str(fps)])
    assert code == 0, capsys.readouterr().err[-3000:]
    count, audio_seconds, _ = video_facts(out)
    assert count == frames
    assert audio_seconds == pytest.approx(4.0, abs=0.05)


def test_emo_checkpoints_still_need_wav2vec(demo_weights, tmp_path, capsys):
    from emo_core.cli.main import main

    code = main(["generate", "--checkpoint", str(demo_weights / "emo.safetensors"),
                 "--mediapipe", str(fixture_path("blaze_face_short_range.tflite").parent),
                 "--image", str(fixture_path("portrait_astronaut.png")),
                 "--audio", str(fixture_path("speech_arctic_a0007.wav")),
                 "--out", str(tmp_path / "x.mp4"), "--size", "64"])
    assert code == 2
    assert "--wav2vec is required" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
