"""A websocket client of a real ComfyUI server, as the frontend is one (not a test file).

``WsClient`` connects to ``/ws?clientId=...`` the way the frontend does (first message: its
feature flags), records every message the server sends to that client in arrival order, and
queues prompts under its own client id, so the server addresses progress and previews to it.
Binary messages are decoded as ComfyUI 0.3.75 frames them (``server.py`` ``encode_bytes``,
``send_image``, ``send_image_with_metadata``).
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from tests.comfyui_harness import ComfyServer

PREVIEW_IMAGE = 1  # protocol.BinaryEventTypes: [image type u32][JPEG/PNG bytes]
TEXT = 3  # [node id length u32][node id][UTF-8 text] (server.send_progress_text)
PREVIEW_IMAGE_WITH_METADATA = 4  # [metadata length u32][metadata JSON][image bytes]
DONE = ("execution_success", "execution_error", "execution_interrupted")


@dataclass
class Preview:
    """One binary preview message: its place in the message stream, node id (when the server
    sent metadata) and the decoded image."""

    index: int
    node: str | None
    image: Image.Image = field(repr=False)


class WsClient:
    """Context manager: ``with WsClient(server) as ws: pid = ws.queue(prompt); ws.wait(pid)``.

    ``preview_metadata``: announce ``supports_preview_metadata`` as the frontend does, so previews
    come as ``PREVIEW_IMAGE_WITH_METADATA`` naming their node; False gets the legacy frames.
    """

    def __init__(self, server: ComfyServer, preview_metadata: bool = True):
        self.server = server
        self.client_id = uuid.uuid4().hex
        self.preview_metadata = preview_metadata
        self.messages: list[tuple[str, Any]] = []  # ("json", {"type", "data"}) | ("binary", bytes)
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def __enter__(self) -> WsClient:
        import websocket  # websocket-client, pinned in .ci/requirements-ci.txt

        url = self.server.url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        self._ws = websocket.create_connection(url, timeout=30)
        flags = {"supports_preview_metadata": self.preview_metadata}
        self._ws.send(json.dumps({"type": "feature_flags", "data": flags}))
        self._ws.settimeout(0.5)
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._ws.close()

    def _receive(self) -> None:
        import websocket

        while not self._stop.is_set():
            try:
                opcode, data = self._ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketConnectionClosedException, OSError):
                return
            if opcode == websocket.ABNF.OPCODE_TEXT:
                item = ("json", json.loads(data.decode("utf-8")))
            elif opcode == websocket.ABNF.OPCODE_BINARY:
                item = ("binary", bytes(data))
            else:
                continue
            with self._lock:
                self.messages.append(item)

    def snapshot(self) -> list[tuple[str, Any]]:
        with self._lock:
            return list(self.messages)

    def queue(self, prompt: dict, extra_pnginfo: dict | None = None) -> str:
        """POST /prompt under this client's id (``extra_pnginfo`` as the frontend sends it)."""
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if extra_pnginfo is not None:
            body["extra_data"] = {"extra_pnginfo": extra_pnginfo}
        answer = self.server.post_json("/prompt", body)
        assert answer.get("node_errors") == {}, answer
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600) -> str:
        """The type of the message that ended ``prompt_id`` (``execution_success``, ...)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for kind, message in self.snapshot():
                if (kind == "json" and message["type"] in DONE
                        and message["data"].get("prompt_id") == prompt_id):
                    return message["type"]
            if self.server.process.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}")
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} not finished after {timeout:.0f} s\n"
                           f"{self.server.log_tail()}")

    def json_messages(self, kind: str) -> list[tuple[int, dict]]:
        """``(index, data)`` of every JSON message of type ``kind``."""
        return [(i, m["data"]) for i, (k, m) in enumerate(self.snapshot())
                if k == "json" and m["type"] == kind]

    def previews(self) -> list[Preview]:
        """Every binary preview message, decoded."""
        found = []
        for index, (kind, data) in enumerate(self.snapshot()):
            if kind != "binary":
                continue
            (event,) = struct.unpack(">I", data[:4])
            if event == PREVIEW_IMAGE:
                node, payload = None, data[8:]
            elif event == PREVIEW_IMAGE_WITH_METADATA:
                (length,) = struct.unpack(">I", data[4:8])
                node = json.loads(data[8:8 + length].decode("utf-8"))["node_id"]
                payload = data[8 + length:]
            else:
                continue
            image = Image.open(io.BytesIO(payload))
            image.load()
            found.append(Preview(index, node, image))
        return found

    def texts(self) -> list[tuple[str, str]]:
        """``(node id, text)`` of every progress-text message (what a node shows on itself)."""
        found = []
        for kind, data in self.snapshot():
            if kind == "binary" and struct.unpack(">I", data[:4])[0] == TEXT:
                (length,) = struct.unpack(">I", data[4:8])
                found.append((data[8:8 + length].decode("utf-8"),
                              data[8 + length:].decode("utf-8", errors="replace")))
        return found

    def node_span(self, node_id: str) -> tuple[int, int]:
        """Message indices ``(start, end)``: the ``executing`` message of ``node_id`` and the next
        ``executing`` (another node, or the ``None`` that ends the prompt)."""
        executing = self.json_messages("executing")
        starts = [i for i, data in executing if data.get("node") == node_id]
        assert starts, f"no 'executing' message for node {node_id}"
        ends = [i for i, data in executing if i > starts[0] and data.get("node") != node_id]
        assert ends, f"node {node_id} never handed over to another node"
        return starts[0], ends[0]
