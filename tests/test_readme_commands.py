"""The README's two commands, read from the README and run as written, in a clean copy of the
repository with a fresh environment folder: the demo command makes a video with the exact frame
count, and the test command runs the ComfyUI and browser tests instead of skipping them.

- Fresh environment: ``EMO_CI_CACHE`` and ``EMO_PORTRAIT_CACHE`` point at empty folders, so
  ``scripts/setup_env.sh`` takes its first-run path (new venv, ``.complete`` marker, per-clone
  ``.venv`` with the package installed editable) and the demo builds its weights. The new venv is
  layered on the venv running this test (``EMO_CI_BASE_VENV``) instead of downloading ~8 GB again:
  seconds instead of 3-10 min on every CI run. The download path itself runs whenever the venv key
  changes (a requirements change), which is exactly when it can break.
- The test command runs ``.ci/run`` as a newcomer would (one ComfyUI version,
  ``EMO_CI_COMFYUI_TARGETS=0.3.75``), restricted with ``EMO_CI_PYTEST_ARGS`` to
  one test marked both ``comfyui`` and ``browser``: the suite must not run inside itself, and one
  real ComfyUI server + Chromium session proves neither kind is skipped. Its log must also show
  that it reused the environment the demo command built (the second invocation).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.comfyui_browser import require_browser
from tests.comfyui_harness import REPO_ROOT, require_comfyui
from tests.test_pipeline_generate import video_facts

# Not marked ``comfyui``: the README's test command runs the ComfyUI tests itself, so this test
# runs once (with the whole suite), not again in .ci/run's pass on the newer ComfyUI.
pytestmark = pytest.mark.browser

NESTED = "EMO_README_TEST_NESTED"  # set for the commands run here: never recurse into this test
ONE_SERVER_TEST = "tests/test_browser.py::test_frontend_boots_and_registers_emo_nodes"


def readme_commands(readme: Path = REPO_ROOT / "README.md") -> tuple[str, str]:
    """(demo command, test command): the first ```bash block under '## Two commands'."""
    text = readme.read_text(encoding="utf-8")
    section = text.split("\n## Two commands\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line.strip() for line in block.splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert len(lines) == 2, f"README's 'Two commands' block must hold two commands: {lines}"
    return lines[0], lines[1]


def _clean_copy(destination: Path) -> Path:
    """What a clone holds: tracked files plus new, not-ignored ones (no .venv, no outputs)."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"],
                            cwd=REPO_ROOT, check=True, capture_output=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def _base_venv() -> Path:
    """The complete venv whose packages this test runs with (CI: the cached deps venv)."""
    spec = importlib.util.find_spec("torch")
    venv = Path(spec.origin).parents[4] if spec and spec.origin else None
    if venv is None or not (venv / ".complete").is_file():
        pytest.skip("not running from a venv built by scripts/setup_env.sh (.ci/run)")
    return venv


def test_readme_commands_in_a_clean_copy(tmp_path):
    if os.environ.get(NESTED):
        pytest.skip("already inside the README commands")
    comfyui = require_comfyui()
    require_browser()
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the repository's files")
    demo_command, test_command = readme_commands()
    repo = _clean_copy(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "EMO_CI_PYTEST_ARGS", "OMP_NUM_THREADS")}
    env.update({NESTED: "1", "EMO_CI_CACHE": str(tmp_path / "ci-cache"),
                "EMO_PORTRAIT_CACHE": str(tmp_path / "demo-cache"),
                "EMO_CI_BASE_VENV": str(_base_venv()), "EMO_COMFYUI_PATH": str(comfyui),
                # One ComfyUI: the newer one's venv layer would be built again in the empty
                # cache (~1 GB); the outer .ci/run already tests it.
                "EMO_CI_COMFYUI_TARGETS": "0.3.75"})

    demo = subprocess.run(["bash", "-c", demo_command], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=1200)
    log = demo.stdout + demo.stderr
    assert demo.returncode == 0, log[-4000:]
    assert "building venv" in log and "installing the package (editable)" in log, log[-4000:]
    video = repo / "emo-output" / "demo-001.mp4"
    assert f"demo video: {video}" in demo.stdout, demo.stdout
    frames, seconds, _ = video_facts(video)
    assert frames == 100 and abs(seconds - 4.0) <= 1 / 25  # bundled 4.0 s clip at 25 fps
    assert (repo / ".venv" / "bin" / "emo-portrait").is_file()

    env["EMO_CI_PYTEST_ARGS"] = f"{ONE_SERVER_TEST} -rs"
    tests = subprocess.run(["bash", "-c", test_command], cwd=repo, env=env, capture_output=True,
                           text=True, timeout=1200)
    log = tests.stdout + tests.stderr
    assert tests.returncode == 0, log[-4000:]
    assert "venv reused" in log and "package env reused" in log, log[-4000:]
    assert re.search(r"\b1 passed\b", log) and "skipped" not in log, log[-4000:]
