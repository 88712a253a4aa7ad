"""Fuzz cases for ``python -m emo_core generate`` with a converted EchoMimic checkpoint: hostile
checkpoints (whisper missing or mis-shaped, an unknown family, broken sampling defaults),
options a whisper/EchoMimic run cannot take (bad fps, steps, guidance, speed, clip layout,
mask) and hostile audio, through the real command line (tests/fuzz_runner.py forks each case).

Every case must be a refusal: exit code 2, exactly one ``error:`` line naming what was wrong, no
traceback, nothing written to the case's output folder. The converted acc fixture is the
intact checkpoint; the hostile ones are it with one edit (tensors or ``emo_config`` metadata).
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import fixture_path
from tests.echomimic_fixture import convert_acc_fixture, skip_without_fixture
from tests.fuzz_cases import assert_clean_refusal, run_cases

pytestmark = skip_without_fixture
REPO = Path(__file__).resolve().parents[1]


def _edited(good: Path, out: Path, tensors=None, config=None) -> Path:
    """``good`` with ``tensors(dict)`` / ``config(dict)`` applied in place, saved as ``out``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(good), "pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        metadata = dict(handle.metadata())
    if tensors is not None:
        tensors(state)
    if config is not None:
        configs = json.loads(metadata["emo_config"])
        config(configs)
        metadata["emo_config"] = json.dumps(configs)
    save_file(state, str(out), metadata=metadata)
    return out


def _drop(prefix: str):
    return lambda state: [state.pop(k) for k in [k for k in state if k.startswith(prefix)]]


def _reshape(key_part: str):
    def edit(state):
        key = next(k for k in state if key_part in k)
        state[key] = state[key].flatten()[:-1].clone()
    return edit


def _sampling(**values):
    return lambda configs: configs["sampling"].update(values)


def _wav(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.astype(np.int16).tobytes())
    return path


CHECKPOINT_EDITS = {
    "whisper_missing": {"tensors": _drop("whisper.")},
    "whisper_wrong_shape": {"tensors": _reshape("whisper.")},
    "face_locator_missing": {"tensors": _drop("face_locator.")},
    "family_unknown": {"config": lambda c: c["backbone"].update(variant="echomimic_v2")},
    "sampling_context_zero": {"config": _sampling(context_frames=0)},
    "sampling_overlap_not_below_context": {"config": _sampling(context_overlap=12)},
    "sampling_steps_text": {"config": _sampling(steps="many")},
    "sampling_guidance_nan": {"config": _sampling(guidance_scale="nan")},
    "sampling_scheduler_not_a_dict": {"config": _sampling(scheduler=[1, 2])},
}
# name -> extra options (the good checkpoint, portrait and speech otherwise)
OPTION_CASES = {
    "fps_zero": ["--fps", "0"], "fps_negative": ["--fps", "-24"], "fps_nan": ["--fps", "nan"],
    "fps_huge": ["--fps", "1e9"], "fps_text": ["--fps", "fast"],
    "steps_zero": ["--steps", "0"], "steps_negative": ["--steps", "-6"],
    "guidance_nan": ["--guidance-reference", "nan"],
    "guidance_negative": ["--guidance-reference", "-1"],
    "frames_per_clip_zero": ["--frames-per-clip", "0"],
    "motion_frames_huge": ["--motion-frames", "1000"],
    "speed_nan": ["--speed", "nan"], "speed_keyframes_garbage": ["--speed-keyframes", "0:x,"],
    "mask_expand_negative": ["--mask-expand", "-0.1"], "size_odd": ["--size", "100"],
    "scheduler_unknown": ["--scheduler", "euler-ancestral-9000"],
    "wav2vec_not_a_folder": ["--wav2vec", "/nonexistent/wav2vec2"],
}
AUDIO_CASES = {"audio_one_sample": np.zeros(1), "audio_silent": np.zeros(16000),
               "audio_garbage": None}


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_echo_generate")
    good = convert_acc_fixture(root / "echomimic_acc.safetensors")
    mediapipe = str(fixture_path("blaze_face_short_range.tflite").parent)
    image, speech = fixture_path("portrait_astronaut.png"), fixture_path("speech_arctic_a0007.wav")

    def argv(name, checkpoint=good, audio=speech, extra=()):
        (root / "out" / name).mkdir(parents=True)
        return {"name": name, "timeout": 300, "argv": [
            "generate", "--checkpoint", str(checkpoint), "--mediapipe", mediapipe,
            "--image", str(image), "--audio", str(audio), "--size", "64",
            "--out", str(root / "out" / name / "x.mp4"), *extra]}

    runs = [argv(name, checkpoint=_edited(good, root / f"{name}.safetensors", **edit))
            for name, edit in CHECKPOINT_EDITS.items()]
    runs += [argv(name, extra=extra) for name, extra in OPTION_CASES.items()]
    for name, samples in AUDIO_CASES.items():
        path = root / f"{name}.wav"
        if samples is None:
            path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + b"\xff" * 64)
        else:
            _wav(path, samples)
        runs.append(argv(name, audio=path))
    results = run_cases(root, runs, timeout=1800)
    return {"root": root, "results": results}


REFUSALS = [*CHECKPOINT_EDITS, *OPTION_CASES, *AUDIO_CASES]


@pytest.mark.parametrize("name", REFUSALS)
def test_refusal_is_one_clean_line(fuzz, name):
    assert_clean_refusal(fuzz["results"][name], fuzz["root"] / "out" / name)
