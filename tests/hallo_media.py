"""Inputs for end-to-end runs of a converted Hallo checkpoint (CLI and ComfyUI tests): the Hallo
tiny fixture (``$EMO_HALLO_FIXTURE``, default ``tests/fixtures/hallo_tiny``) converted with
``convert_hallo``, and a short speech clip with an exactly known frame count."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

from tests.fixture_sets import HALLO_FIXTURE

ROOT = Path(__file__).resolve().parents[1]

FIXTURE = HALLO_FIXTURE
HAS_FIXTURE = (FIXTURE / "outputs.safetensors").is_file()
WAV2VEC = FIXTURE / "pretrained_models/wav2vec/wav2vec2-base-960h"
SAMPLES = ROOT / "emo_core" / "samples"
SECONDS = 0.92  # 14720 samples at 16 kHz: 23 frames at 25 fps (Hallo's ceil and EMO's round agree)
FRAMES = 23  # two clips of 16: the second is cropped to 7 frames


def write_speech(path: Path, seconds: float = SECONDS) -> Path:
    """The bundled speech clip's ``seconds`` after its leading silence, 16 kHz mono 16-bit WAV."""
    with wave.open(str(SAMPLES / "speech_arctic_a0007.wav"), "rb") as source:
        rate, width, channels = source.getframerate(), source.getsampwidth(), source.getnchannels()
        data = np.frombuffer(source.readframes(source.getnframes()), np.int16)
    assert (rate, width, channels) == (16000, 2, 1)
    offset = 8000  # skip the leading silence
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data[offset:offset + round(seconds * rate)].tobytes())
    return path


def convert_fixture(out: Path) -> Path:
    """The fixture's pretrained_models/ converted to an EMO checkpoint at ``out``."""
    from emo_core.cli.cmd_convert_hallo import convert_hallo

    return convert_hallo(FIXTURE / "pretrained_models", out,
                         json.loads((FIXTURE / "hallo_unet_kwargs.json").read_text()))
