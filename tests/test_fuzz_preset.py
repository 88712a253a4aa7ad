"""Fuzz cases for ``generate --preset`` (issue 22), through the real command line.

Each case runs ``python -m emo_core generate ... --preset VALUE`` in a fresh process with real
input files (the shared portrait and speech fixtures) and a fresh output folder. Hostile values
(unknown names, case and whitespace variants, shell text, a 10,000-character name, an option in
its place, a valid preset next to a bad option): a refusal is exit 2, exactly one ``error:`` line
naming ``--preset`` (or the bad option) and the choices, no traceback, nothing written. The
EMO Sampler's hostile preset values are in tests/test_presets.py (the node's own refusal).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import fixture_path
from tests.test_fuzz_cli import ERROR_LINE

REPO = Path(__file__).resolve().parents[1]
# case -> (extra argv, texts the one error line must hold)
CASES = {
    "unknown": (["--preset", "turbo"], ["--preset", "'standard', 'fast'", "turbo"]),
    "empty": (["--preset", ""], ["--preset", "'standard', 'fast'"]),
    "upper_case": (["--preset", "FAST"], ["--preset", "'standard', 'fast'", "FAST"]),
    "trailing_space": (["--preset", "fast "], ["--preset", "'standard', 'fast'"]),
    "newline": (["--preset", "fast\nerror: injected"], ["--preset", "'standard', 'fast'"]),
    "shell_text": (["--preset", "fast; rm -rf ~"], ["--preset", "'standard', 'fast'"]),
    "unicode": (["--preset", "f\u00e1st"], ["--preset", "'standard', 'fast'"]),
    "huge": (["--preset", "f" * 10_000], ["--preset", "'standard', 'fast'"]),
    "missing_value": (["--preset"], ["--preset", "expected one argument"]),
    "option_as_value": (["--preset", "--steps"], ["--preset", "expected one argument"]),
    "last_one_bad": (["--preset=fast", "--preset=turbo"], ["--preset", "turbo"]),
    "fast_with_bad_steps": (["--preset", "fast", "--steps", "0"], ["steps"]),
    "fast_with_bad_scheduler": (["--preset", "fast", "--scheduler", "dpm"], ["--scheduler"]),
}


@pytest.fixture(scope="module")
def inputs():
    return {"--image": fixture_path("portrait_astronaut.png"),
            "--audio": fixture_path("speech_arctic_a0007.wav")}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_preset_is_refused_in_one_line(name, inputs, tmp_path):
    extra, names = CASES[name]
    out = tmp_path / "out"
    out.mkdir()
    argv = [sys.executable, "-m", "emo_core", "generate", "--checkpoint", str(tmp_path / "c"),
            "--wav2vec", str(tmp_path / "w"), "--mediapipe", str(tmp_path / "m"),
            "--out", str(out / "x.mp4"), *[str(x) for kv in inputs.items() for x in kv], *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                               "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)})
    err = done.stderr
    assert done.returncode == 2, (done.returncode, err[-2000:])
    assert len(ERROR_LINE.findall(err)) == 1 and "Traceback" not in err, err[-2000:]
    line = next(x for x in err.splitlines() if "error: " in x)
    for text in names:
        assert text in line, (text, line[:500])
    assert len(line) < 12_000  # the huge name is echoed once, not repeated
    assert list(out.iterdir()) == []
