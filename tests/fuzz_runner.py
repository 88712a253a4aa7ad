"""Run many ``python -m emo_core ...`` invocations cheaply: import once, fork per case.

``python tests/fuzz_runner.py CASES.json RESULTS.json``. Each case is its own process: the parent
imports ``emo_core.cli.main`` and torch once (seconds on 2 busy cores), then forks a child per
case that runs exactly what ``python -m emo_core`` runs (``sys.exit(main())``, with the
interpreter's own handling of SystemExit and uncaught exceptions), with its own argv, cwd,
environment, stdout/stderr files and resource limits. The parent enforces a timeout (a hang) and
can send a signal once a text appears in the child's stderr. Cases are JSON objects:
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


def _wait(pid: int, case: dict, err_path: str) -> tuple[int, bool]:
    """(exit status, hung) for the child; sends ``case["signal"]`` once its text appears."""
    deadline = time.monotonic() + float(case.get("timeout", 120))
    pending = getattr(signal, case["signal"]) if case.get("signal") else None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return (os.waitstatus_to_exitcode(status), False)
        if pending is not None and case.get("signal_after", "") in Path(err_path).read_text(
                errors="replace"):
            time.sleep(float(case.get("signal_delay", 0.5)))
            os.kill(pid, pending)
            pending = None
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return (-9, True)
        time.sleep(0.05)


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
    results = {}
    for index, case in enumerate(cases):
        out_path, err_path = scratch / f"{index}.out", scratch / f"{index}.err"
        out_path.write_text("")
        err_path.write_text("")  # exists before the child runs: the parent polls it for signals
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(case, str(out_path), str(err_path))
        rc, hung = _wait(pid, case, str(err_path))
        results[case["name"]] = {
            "rc": rc, "hung": hung, "seconds": round(time.monotonic() - started, 2),
            "stdout": out_path.read_text(errors="replace"),
            "stderr": err_path.read_text(errors="replace"),
        }
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    cases_file, results_file = Path(sys.argv[1]), Path(sys.argv[2])
    scratch = results_file.parent / "fuzz_io"
    scratch.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(run_cases(json.loads(cases_file.read_text()), scratch)))
