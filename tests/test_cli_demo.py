"""`python -m emo_core demo`: from nothing to a video with the bundled samples (weights built on
first use into the cache folder, reused afterwards), within its CPU budget, into a new file in
./emo-output each run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.bench_startup import measure
from tests.test_pipeline_generate import video_facts

REPO = Path(__file__).resolve().parents[1]
# The budgets on this 2-core machine (first run included); measured 17 s and 29 s of CPU
# while the machine was shared by several test runs (load average 8).
DEMO_CPU_S = 30
CARTOON_CPU_S = 60


def _env(tmp_path: Path) -> dict:
    # No OMP_NUM_THREADS: the demo must be fast as a newcomer runs it, not only in CI's settings.
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(EMO_PORTRAIT_CACHE=str(tmp_path / "cache"), PATH="/usr/bin:/bin")
    return env


def test_demo_first_run_within_budget_then_reuses_weights_and_never_overwrites(tmp_path):
    first = measure(["demo"], cwd=tmp_path, env=_env(tmp_path))
    assert first["rc"] == 0, first["stderr"][-3000:]
    out = tmp_path / "emo-output" / "demo-001.mp4"
    assert "building demo weights" in first["stdout"]
    assert first["stdout"].count(str(out)) == 1  # path printed once
    assert first["stdout"].count("noise") == 1  # says once, plainly, what the video shows
    assert first["cpu_s"] < DEMO_CPU_S, first["cpu_s"]
    # The bar is up before anything heavy runs: its first stages are drawn before the torch
    # import (an order, not a wall-clock time: busy CI machines stretch the seconds).
    stages = re.findall(r"demo: ([a-z][a-z ,0-9]+?)\s+\d+%", first["stderr"])
    assert stages[:2] == ["starting", "checking inputs"], first["stderr"][:500]
    assert stages.index("importing torch and diffusers") > stages.index("checking inputs")
    frames, audio_seconds, _ = video_facts(out)
    assert frames == 100 and abs(audio_seconds - 4.0) <= 1 / 25  # bundled 4.0 s clip at 25 fps
    weights = tmp_path / "cache" / "demo-weights" / "emo.safetensors"
    stamps = weights.stat().st_mtime_ns, out.stat().st_mtime_ns
    second = subprocess.run([sys.executable, "-m", "emo_core", "demo", "--steps", "1"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900,
                            env=dict(_env(tmp_path), PYTHONPATH=str(REPO)))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "building demo weights" not in second.stdout
    assert str(tmp_path / "emo-output" / "demo-002.mp4") in second.stdout
    assert (weights.stat().st_mtime_ns, out.stat().st_mtime_ns) == stamps  # reused, kept
    assert sorted(p.name for p in (tmp_path / "emo-output").iterdir()) == [
        "demo-001.mp4", "demo-002.mp4"]


def test_talking_cartoon_demo_moves_the_mouth_with_real_speech(tmp_path):
    """The committed tiny weights (trained on synthetic speech) on a face and a real speech clip
    they never saw: the mouth opening measured in the frames must follow the clip's loudness.
    Measured r = 0.74 on this machine (at 20 steps and at the demo's 10); random or broken audio
    conditioning gives |r| < 0.3 (the proof's audio-dropped figure is -0.002), so 0.5 separates
    them with room for CPU differences."""
    done = measure(["demo", "--talking-cartoon"], cwd=tmp_path, env=_env(tmp_path))
    assert done["rc"] == 0, done["stderr"][-3000:]
    out = tmp_path / "emo-output" / "talking-cartoon-001.mp4"
    assert done["stdout"].count(str(out)) == 1
    assert done["cpu_s"] < CARTOON_CPU_S, done["cpu_s"]
    frames, audio_seconds, _ = video_facts(out)
    assert frames == 100 and abs(audio_seconds - 4.0) <= 1 / 25
    r = float(done["stdout"].rsplit("r = ", 1)[1].split()[0])
    assert r > 0.5, done["stdout"]


def test_talking_cartoon_demo_without_weights_says_where_they_come_from(tmp_path):
    out = tmp_path / "cartoon.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "emo_core", "demo", "--talking-cartoon", "--out", str(out),
         "--weights", str(tmp_path / "nothing-here")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "prove-learning" in done.stderr and "nothing-here" in done.stderr
    assert not out.exists()


def test_talking_cartoon_demo_needs_no_training_packages():
    """`pip install emo-portrait` without the [train] extra: the cartoon demo must still import
    (accelerate is blocked here, as if it were not installed)."""
    code = ("import sys; sys.modules['accelerate'] = None; "
            "import emo_core.cli.demo_cartoon; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
