"""Run many ``python -m emo_core ...`` invocations cheaply: import once, fork per case.

``python tests/fuzz_runner.py CASES.json RESULTS.json``. Each case is its own process: the parent
imports ``emo_core.cli.main`` and torch once (seconds on 2 busy cores), then forks a child per
case that runs exactly what ``python -m emo_core`` runs (``sys.exit(main())``, with the
interpreter's own handling of SystemExit and uncaught exceptions), with its own argv, cwd,
environment, stdout/stderr files and resource limits. The parent enforces a timeout (a hang) and
can send a signal once a text appears in the child's stderr. Two cases run at a time. Cases are JSON objects:
``{"name", "argv", "cwd", "env": {...}, "timeout", "fsize_limit": bytes | null,
"signal": "SIGINT" | "SIGTERM" | null, "signal_after": "text in stderr"}``.
Results: ``{"name": {"rc", "stdout", "stderr", "seconds", "hung"}}``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARALLEL = 2  # children at a time: the test machines have 2 cores


def _child(case: dict, out_path: str, err_path: str) -> None:
    """In the forked child: redirect, limit, run the CLI like the interpreter would."""
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.chdir(case.get("cwd") or os.getcwd())
    os.environ.update(case.get("env") or {})
    if case.get("fsize_limit"):
        limit = int(case["fsize_limit"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = ["python -m emo_core", *case["argv"]]
    code = 1
    try:
        from emo_core.cli.main import main

        code = main(case["argv"])
    except SystemExit as stop:  # argparse errors / --help, as the interpreter reports them
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
    except BaseException:  # what the interpreter prints for an uncaught exception
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(int(code or 0) & 0xFF)


class _Running:
    """One forked case: polls its exit, sends its signal once its text appears, times out."""

    def __init__(self, case: dict, pid: int, out_path: Path, err_path: Path):
        self.case, self.pid, self.out_path, self.err_path = case, pid, out_path, err_path
        self.started = time.monotonic()
        self.deadline = self.started + float(case.get("timeout", 120))
        self.pending = getattr(signal, case["signal"]) if case.get("signal") else None
        self.seen_at: float | None = None

    def poll(self) -> dict | None:
        """The result once the child ended (or was killed as hung), else None."""
        done, status = os.waitpid(self.pid, os.WNOHANG)
        if done:
            return self._result(os.waitstatus_to_exitcode(status), False)
        now = time.monotonic()
        if self.pending is not None:
            if self.seen_at is None and self.case.get("signal_after", "") in \
                    self.err_path.read_text(errors="replace"):
                self.seen_at = now
            if self.seen_at is not None and now - self.seen_at >= float(
                    self.case.get("signal_delay", 0.5)):
                os.kill(self.pid, self.pending)
                self.pending = None
        if now > self.deadline:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            return self._result(-9, True)
        return None

    def _result(self, rc: int, hung: bool) -> dict:
        return {"rc": rc, "hung": hung, "seconds": round(time.monotonic() - self.started, 2),
                "stdout": self.out_path.read_text(errors="replace"),
                "stderr": self.err_path.read_text(errors="replace")}


def preload() -> None:
    """Import once in the parent what the commands import (torch, diffusers, transformers,
    MediaPipe, PyAV): each forked case then starts in milliseconds instead of seconds."""
    import importlib

    from emo_core.cli.main import build_parser

    build_parser()
    for name in ("emo_core.pipeline.run", "emo_core.io.emo_checkpoint", "emo_core.io.wav2vec",
                 "emo_core.io.sd15", "emo_core.io.animatediff", "emo_core.models.emo_models",
                 "emo_core.audio.features", "emo_core.audio.waveform", "emo_core.face.detect",
                 "emo_core.face.mask", "emo_core.face.crop", "emo_core.pipeline.video",
                 "emo_core.style", "emo_core.style.sources", "emo_core.image",
                 "transformers.models.wav2vec2.modeling_wav2vec2", "torchaudio.functional"):
        importlib.import_module(name)


def run_cases(cases: list[dict], scratch: Path) -> dict:
    preload()
    results: dict = {}
    queue = list(enumerate(cases))
    running: list[_Running] = []
    while queue or running:
        while queue and len(running) < PARALLEL:
            index, case = queue.pop(0)
            out_path, err_path = scratch / f"{index}.out", scratch / f"{index}.err"
            out_path.write_text("")
            err_path.write_text("")  # exists before the child runs: polled for signal texts
            pid = os.fork()
            if pid == 0:
                _child(case, str(out_path), str(err_path))
            running.append(_Running(case, pid, out_path, err_path))
        for child in list(running):
            result = child.poll()
            if result is not None:
                results[child.case["name"]] = result
                running.remove(child)
        time.sleep(0.05)
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    cases_file, results_file = Path(sys.argv[1]), Path(sys.argv[2])
    scratch = results_file.parent / "fuzz_io"
    scratch.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(run_cases(json.loads(cases_file.read_text()), scratch)))
