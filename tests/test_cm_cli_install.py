"""Install the pack the way ComfyUI-Manager users do (``cm-cli install``) and start ComfyUI.

A throwaway copy of ComfyUI receives a ``git clone`` of this repository's HEAD through
``cm-cli install file://localhost/<clone>`` (a plain ``file:///`` URL is refused by cm-cli). cm-cli
pip-installs requirements.txt line by line with the interpreter running it; with the test
environment already complete that must be a no-op that never touches torch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.comfyui_harness import (
    EMO_NODE_IDS,
    PACK_NAME,
    REPO_ROOT,
    ComfyServer,
    env_flag,
    require_comfyui,
)

pytestmark = pytest.mark.comfyui

# cm-cli's entry point, run by this interpreter so its pip calls target this environment.
CM_CLI = "import sys; from cm_cli import main; sys.argv[0] = 'cm-cli'; sys.exit(main())"


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, timeout=120).stdout.strip()


def _torch_fingerprint() -> tuple[str, int]:
    """Version and dist-info mtime: a reinstall (even of the same version) changes the mtime."""
    dist = importlib.metadata.distribution("torch")
    return dist.version, Path(dist._path).stat().st_mtime_ns  # noqa: SLF001 (no public path API)


def _requirement_lines() -> list[str]:
    lines = (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(ComfyUI copy, cm-cli output, torch fingerprint before) after ``cm-cli install``."""
    comfyui = require_comfyui()
    if importlib.util.find_spec("cm_cli") is None or shutil.which("git") is None:
        reason = "cm-cli (pip install comfyui-manager) and git are needed for this test"
        if env_flag("EMO_REQUIRE_COMFYUI"):
            pytest.fail(reason)
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("cm-cli")
    copy = root / "ComfyUI"
    shutil.copytree(comfyui, copy, ignore=shutil.ignore_patterns("__pycache__", ".complete"))
    clone = root / "src" / PACK_NAME
    # A clone of HEAD: what a user installs is what is committed, not the working tree.
    _git("clone", "--quiet", str(REPO_ROOT), str(clone), cwd=root)
    torch_before = _torch_fingerprint()
    env = dict(os.environ, COMFYUI_PATH=str(copy))
    result = subprocess.run(
        [sys.executable, "-c", CM_CLI, "install", f"file://localhost{clone}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    output = result.stdout + result.stderr
    log = REPO_ROOT / "test-artifacts" / "cm-cli-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(output, encoding="utf-8")
    assert result.returncode == 0, f"cm-cli failed ({result.returncode}), see {log}"
    return copy, output, torch_before


def test_cm_cli_clones_head_into_custom_nodes(installed):
    copy, output, _ = installed
    pack = copy / "custom_nodes" / PACK_NAME
    assert "[INSTALLED]" in output, output[-2000:]
    assert (pack / "requirements.txt").is_file()
    assert _git("rev-parse", "HEAD", cwd=pack) == _git("rev-parse", "HEAD", cwd=REPO_ROOT)


def test_cm_cli_installs_exactly_requirements_txt_and_keeps_torch(installed):
    _, output, torch_before = installed
    # cm-cli echoes each pip command (wrapped over lines by its console): collect the targets.
    flat = output.replace("\n", "")
    targets = re.findall(r"'pip',\s*'install',\s*'([^']+)'\]", flat)
    assert sorted(targets) == sorted(_requirement_lines()), targets
    assert not any(re.match(r"torch(vision|audio)?\b", t) for t in targets), targets
    # Everything is already installed in the test environment, so pip must change nothing.
    for line in output.splitlines():
        assert not line.startswith(("Successfully installed", "Uninstalling")), line
    assert _torch_fingerprint() == torch_before


def test_installed_pack_loads_in_comfyui(installed):
    copy, _, _ = installed
    # The copy is its own base directory: exactly the layout a Manager user has.
    with ComfyServer(copy, name="cm-cli-server", base_dir=copy, link_pack=False) as server:
        problems = server.import_problems()
        assert problems == [], "ComfyUI reported import problems:\n" + "\n".join(problems)
        info = server.object_info()
    missing = [node_id for node_id in EMO_NODE_IDS if node_id not in info]
    assert missing == [], f"cm-cli-installed pack lacks nodes in /object_info: {missing}"
