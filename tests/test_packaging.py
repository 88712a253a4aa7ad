"""Packaging rules: one dependency list, no torch pins, Registry metadata, host independence."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:  # Python 3.11+ (the pack supports 3.10, where tomli is the same parser)
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
TORCH_TRIO = {"torch", "torchvision", "torchaudio"}
# Top-level modules that only exist inside a ComfyUI process. emo_core must import none of them
# (DESIGN §2.11): it runs from the CLI and tests without ComfyUI.
COMFY_MODULES = {
    "comfy", "comfy_api", "comfy_extras", "comfy_execution", "comfy_config", "comfy_api_nodes",
    "folder_paths", "server", "nodes", "execution", "node_helpers", "latent_preview",
    "comfyui_version", "app", "utils", "protocol", "main",
}


def _normalised(lines: list[str]) -> set[str]:
    """Requirement strings in canonical form (name lower-cased, '-'/'_' unified, spaces dropped)."""
    result = set()
    for line in lines:
        req = Requirement(line)
        name = req.name.lower().replace("_", "-")
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        marker = f";{req.marker}" if req.marker else ""
        result.add(f"{name}{extras}{req.specifier}{marker}")
    return result


def _requirements_txt() -> list[str]:
    lines = (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_requirements_txt_matches_pyproject_dependencies():
    from_txt = _normalised(_requirements_txt())
    from_toml = _normalised(_pyproject()["project"]["dependencies"])
    assert from_txt == from_toml, (
        f"only in requirements.txt: {sorted(from_txt - from_toml)}; "
        f"only in pyproject.toml: {sorted(from_toml - from_txt)}"
    )
    # Duplicates would hide a conflicting second pin of the same package.
    names = [Requirement(line).name.lower() for line in _requirements_txt()]
    assert len(names) == len(set(names)), names


def test_torch_trio_is_never_a_runtime_dependency():
    for source, lines in (("requirements.txt", _requirements_txt()),
                          ("pyproject.toml", _pyproject()["project"]["dependencies"])):
        names = {Requirement(line).name.lower() for line in lines}
        assert not names & TORCH_TRIO, f"{source} lists {sorted(names & TORCH_TRIO)}"


def test_comfy_registry_metadata():
    comfy = _pyproject()["tool"]["comfy"]
    for key in ("PublisherId", "DisplayName", "Icon", "requires-comfyui"):
        assert key in comfy, f"[tool.comfy] lacks {key}"
    assert comfy["PublisherId"].strip() and comfy["DisplayName"].strip()
    # requires-comfyui must be a version specifier the Registry (and packaging) can parse.
    spec = Requirement("comfyui" + comfy["requires-comfyui"]).specifier
    assert spec.contains("0.3.75"), (
        f"requires-comfyui {comfy['requires-comfyui']!r} excludes 0.3.75"
    )


def _imported_roots(path: Path) -> set[str]:
    """Top-level names of absolute imports in one Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and _dynamic_import_target(node):
            roots.add(_dynamic_import_target(node).split(".")[0])
    return roots


def _dynamic_import_target(call: ast.Call) -> str | None:
    """``"comfy.x"`` for ``importlib.import_module("comfy.x")`` / ``__import__("comfy.x")``."""
    name = getattr(call.func, "attr", getattr(call.func, "id", ""))
    if name in ("import_module", "__import__") and call.args:
        first = call.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def test_emo_core_source_imports_nothing_from_comfyui():
    files = sorted((REPO_ROOT / "emo_core").rglob("*.py"))
    assert files, "emo_core has no Python files"
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(roots & COMFY_MODULES)
        for path in files
        if (roots := _imported_roots(path)) & COMFY_MODULES
    }
    assert offenders == {}, f"emo_core files importing ComfyUI modules: {offenders}"


def test_ast_scan_catches_comfy_imports(tmp_path):
    # The scanner itself must see every import style, or the test above proves nothing.
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import comfy.model_management\nfrom folder_paths import get_full_path\n"
        "import importlib\nimportlib.import_module('comfy_api.latest')\nfrom . import nodes\n",
        encoding="utf-8",
    )
    # 'from . import nodes' is a relative import of our own module, not ComfyUI's nodes.py.
    assert _imported_roots(sample) & COMFY_MODULES == {"comfy", "folder_paths", "comfy_api"}


@pytest.mark.parametrize("module", ["emo_core", "emo_core.cli.main"])
def test_importing_emo_core_loads_no_comfyui_module(module):
    # A fresh interpreter, so modules imported by other tests cannot hide (or fake) a leak.
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"names = {sorted(COMFY_MODULES)!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in names)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    leaked = json.loads(result.stdout.strip().splitlines()[-1])
    assert leaked == [], f"importing {module} loaded ComfyUI modules: {leaked}"
