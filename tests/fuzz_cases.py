"""What the command-line fuzz modules share: running a list of cases through
``tests/fuzz_runner.py`` (one process imports once, forks a child per case) and the checks a clean
refusal passes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# An argparse or EMOInputError line: "error: ..." at a line start or after the program name.
ERROR_LINE = re.compile(r"(^|: )error: ", re.MULTILINE)


def run_cases(root: Path, cases: list[dict], timeout: float = 1800) -> dict:
    """Run ``cases`` (fuzz_runner's JSON objects) from ``root`` with a bare environment (no
    user PATH or HOME, one torch thread); ``{name: {"rc", "stdout", "stderr", "seconds",
    "hung"}}``."""
    (root / "cases.json").write_text(json.dumps(cases))
    subprocess.run([sys.executable, str(REPO / "tests" / "fuzz_runner.py"),
                    str(root / "cases.json"), str(root / "results.json")], check=True,
                   timeout=timeout, cwd=root, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                                   "OMP_NUM_THREADS": "1", "HOME": str(root)})
    return json.loads((root / "results.json").read_text())


def assert_clean_refusal(result: dict, out_folder: Path) -> None:
    """Exit 2 with exactly one error line, no traceback, no hang, nothing in ``out_folder``."""
    text = result["stdout"] + result["stderr"]
    assert not result["hung"], text[-2000:]
    assert "Traceback" not in text, text[-3000:]
    assert result["rc"] == 2, (result["rc"], text[-2000:])
    assert len(ERROR_LINE.findall(result["stderr"])) == 1, result["stderr"]
    assert not list(out_folder.iterdir())
