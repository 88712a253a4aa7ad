"""Comfy Registry readiness: ``pyproject.toml`` passes the registry's own validation, the one
``comfy node validate`` / ``comfy node publish`` run (comfy-cli's ``validate_node_for_publishing``:
the ``[project]`` / ``[tool.comfy]`` tables parsed and checked, a version, and ruff's security
rules), offline; the icon it names is in this repository; the description says what the pack does.

comfy-cli lives in the ComfyUI 0.30.0 venv layer that ``.ci/run`` builds
(.ci/requirements-comfyui-0.30.0.txt); ``.ci/run`` names its interpreter in EMO_COMFY_CLI_PYTHON.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from PIL import Image

from tests.comfyui_harness import REPO_ROOT, env_flag

# What comfy-cli runs for `comfy node validate`, without its telemetry wrapper (no network).
VALIDATE = ("from comfy_cli.command.custom_nodes.command import validate_node_for_publishing\n"
            "config = validate_node_for_publishing()\n"
            "print('ICON=' + config.tool_comfy.icon)\n"
            "print('DESCRIPTION=' + config.project.description)\n"
            "print('REPOSITORY=' + config.project.urls.repository)\n")
PASSED = "All validation checks passed successfully"


def _comfy_cli_python() -> str:
    configured = os.environ.get("EMO_COMFY_CLI_PYTHON")
    if configured:
        return configured
    if importlib.util.find_spec("comfy_cli") is not None:
        return sys.executable
    reason = ("comfy-cli is not installed: .ci/run installs it (EMO_COMFY_CLI_PYTHON), or "
              "pip install comfy-cli==1.23.0")
    if env_flag("EMO_REQUIRE_COMFYUI"):
        pytest.fail(f"EMO_REQUIRE_COMFYUI is set but {reason}")
    pytest.skip(reason)


def _validate(folder: Path, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), NO_COLOR="1", PYTHONUTF8="1")
    env.pop("PYTHONPATH", None)
    return subprocess.run([_comfy_cli_python(), "-c", VALIDATE], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)


def test_pyproject_passes_the_comfy_registry_validation(tmp_path):
    done = _validate(REPO_ROOT, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert PASSED in output, output
    # comfy-cli reports problems it tolerates as "Warning: ..." lines, security findings with
    # "Security warnings found": none of either.
    assert "Warning" not in output and "warnings found" not in output, output
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line
                  and line.split("=", 1)[0] in ("ICON", "DESCRIPTION", "REPOSITORY"))
    icon = urlparse(values["ICON"])
    repository = values["REPOSITORY"]
    # raw.githubusercontent.com/<owner>/<repo>/main/<path>: a file of this repository.
    owner_repo = urlparse(repository).path.strip("/")
    assert icon.scheme == "https" and icon.netloc == "raw.githubusercontent.com", values["ICON"]
    assert icon.path.startswith(f"/{owner_repo}/main/"), (icon.path, owner_repo)
    local = REPO_ROOT / icon.path.removeprefix(f"/{owner_repo}/main/")
    with Image.open(local) as image:  # the registry shows a square icon, at most 400 px
        assert image.format == "PNG" and image.size[0] == image.size[1] <= 400, image
    description = values["DESCRIPTION"]
    assert 40 <= len(description) <= 300, description
    for words in ("ComfyUI", "portrait", "video"):
        assert words in description, description


def test_validation_fails_on_a_broken_pyproject(tmp_path):
    """The same validation refuses a pyproject.toml without a version: the check above bites."""
    folder = tmp_path / "pack"
    folder.mkdir()
    text = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (folder / "pyproject.toml").write_text(text.replace('version = "0.1.0"\n', "", 1))
    shutil.copy2(REPO_ROOT / "docs" / "icon.png", folder / "icon.png")
    done = _validate(folder, tmp_path)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "project version is empty" in done.stdout + done.stderr
