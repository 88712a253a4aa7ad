"""Headless-browser harness: Debian chromium + chromedriver driven by Selenium (not a test file).

Why Selenium + Debian's chromedriver: the driver comes from the same Debian package set as the
browser, so their versions always match, and nothing is downloaded at run time (Playwright would
want its own browser build). Selenium Manager is kept offline because both paths are explicit.

Tests skip when the browser is missing, unless ``EMO_REQUIRE_BROWSER`` is set (``.ci/run`` sets
it), in which case they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.comfyui_harness import ARTIFACTS, ComfyServer, env_flag

CHROMIUM = Path(os.environ.get("EMO_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("EMO_CHROMEDRIVER", "/usr/bin/chromedriver"))
# Without the background-networking switches Chromium's own connections (component updates,
# sync, QUIC probes) get refused in the sandboxed CI network and the page load stalls.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1600,1000",
)
# True once the ComfyUI frontend has booted: the app object, its graph and the canvas exist.
APP_READY_JS = (
    "return !!(window.app && window.app.graph && window.app.canvas"
    " && document.querySelector('canvas'));"
)


def require_browser() -> tuple[Path, Path]:
    """(chromium, chromedriver), or skip (fail when ``EMO_REQUIRE_BROWSER`` is set)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ModuleNotFoundError:
        missing.append("the selenium Python package")
    if missing:
        reason = (f"browser tests need {', '.join(missing)}: apt-get install chromium "
                  "chromium-driver; pip install selenium (see .ci/requirements-ci.txt)")
        if env_flag("EMO_REQUIRE_BROWSER"):
            pytest.fail(f"EMO_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    return CHROMIUM, CHROMEDRIVER


def wait_until(driver, script: str, timeout: float, what: str) -> Any:
    """Poll ``script`` in the page until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.25)
    shot = save_screenshot(driver, f"timeout-{what.replace(' ', '-')}")
    raise TimeoutError(f"browser: {what} not reached within {timeout:.0f} s (screenshot {shot})")


def save_screenshot(driver, name: str) -> Path:
    """PNG of the current viewport at ``test-artifacts/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if not driver.save_screenshot(str(path)):
        raise RuntimeError(f"chromium could not write the screenshot {path}")
    return path


def console_errors(driver) -> list[str]:
    """Browser console messages of level SEVERE since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _driver(chromium: Path, chromedriver: Path, profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    service = Service(executable_path=str(chromedriver),
                      log_output=str(ARTIFACTS / "chromedriver.log"))
    return webdriver.Chrome(options=options, service=service)


@contextmanager
def open_comfy_page(server: ComfyServer, timeout: float = 120) -> Iterator[Any]:
    """A Selenium driver showing the server's frontend, once ``window.app`` is ready."""
    chromium, chromedriver = require_browser()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download
    # A fresh user gets the template browser as a modal; a returning user does not. Tests (and
    # their screenshots) want the plain canvas a returning user sees.
    server.post_json("/settings/Comfy.TutorialCompleted", True)
    profile = tempfile.mkdtemp(prefix="emo-chromium-")  # fresh profile: no state between tests
    driver = _driver(chromium, chromedriver, profile)
    try:
        driver.set_page_load_timeout(timeout)
        driver.get(server.url)
        wait_until(driver, APP_READY_JS, timeout, "ComfyUI app ready")
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def load_workflow_file(driver, workflow: Path, timeout: float = 60) -> None:
    """Open a UI-format workflow file through the frontend's own file input, as a user does.

    The Workflow > Open menu clicks the hidden ``#comfy-file-input``; handing the file to that
    input runs the same ``app.handleFile`` path.
    """
    from selenium.webdriver.common.by import By

    expected = len(json.loads(workflow.read_text(encoding="utf-8"))["nodes"])
    driver.execute_script("app.graph.clear();")
    field = driver.find_element(By.ID, "comfy-file-input")
    field.send_keys(str(workflow.resolve()))
    wait_until(driver, f"return app.graph._nodes.length === {expected};", timeout,
               "workflow loaded")


def graph_node_types(driver) -> list[str]:
    return driver.execute_script("return app.graph._nodes.map(n => n.type);")


def queue_prompt(driver, server: ComfyServer, timeout: float = 60) -> str:
    """Queue the graph shown in the page (``app.queuePrompt``, what the Run button calls).

    Returns the new prompt id, found as the one entry that appears in /queue or /history.
    """
    known = set(server.history())
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "app.queuePrompt(0, 1).then(r => done(r), e => done(String(e)));"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = server.get_json("/queue")
        ids = {item[1] for item in queue["queue_running"] + queue["queue_pending"]}
        ids |= set(server.history()) - known
        if ids:
            return ids.pop()
        time.sleep(0.25)
    shot = save_screenshot(driver, "queue-failed")
    raise TimeoutError(f"no prompt reached the server after queueing (screenshot {shot}); "
                       f"console: {console_errors(driver)}")


# Drops a file the server serves (``/view``) onto the graph canvas the way a file dragged from the
# desktop arrives: a real ``drop`` DragEvent whose DataTransfer holds the File. The frontend's
# document-level drop handler reads the workflow from it (``app.handleFile``).
DROP_FILE_JS = """
const [url, name, type] = arguments, done = arguments[arguments.length - 1];
fetch(url).then(r => r.blob()).then(blob => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([blob], name, {type}));
  const canvas = app.canvas.canvas, box = canvas.getBoundingClientRect();
  const at = {bubbles: true, cancelable: true, dataTransfer: transfer,
              clientX: box.left + box.width / 2, clientY: box.top + box.height / 2};
  canvas.dispatchEvent(new DragEvent('dragover', at));
  canvas.dispatchEvent(new DragEvent('drop', at));
  done(blob.size);
}).catch(e => done(String(e)));
"""


def drop_output_file(driver, server: ComfyServer, record: dict, mime: str) -> int:
    """Drop the output file ``record`` (``filename``, ``subfolder``, ``type`` as in /history)
    onto the canvas; returns the byte count the page fetched."""
    from urllib.parse import urlencode

    query = urlencode({"filename": record["filename"], "subfolder": record["subfolder"],
                       "type": record.get("type", "output")})
    size = driver.execute_async_script(DROP_FILE_JS, f"/view?{query}", record["filename"], mime)
    if not isinstance(size, int):
        raise RuntimeError(f"the page could not fetch {record} to drop it: {size}")
    return size
