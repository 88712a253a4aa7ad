"""CPU seconds and peak memory of what a newcomer runs first: ``--help``, ``demo`` and
``demo --talking-cartoon`` (each in a fresh process; the demo with an empty weights cache, so its
first run, weights building included, is what is measured).

    python benchmarks/bench_startup.py            # all three
    python benchmarks/bench_startup.py --help-only

CPU time (user + system of the child) is the figure that matters on a shared machine; wall time is
printed for reference only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Each child is measured through its own wrapper process: RUSAGE_CHILDREN of a fresh wrapper holds
# exactly that one command (peak RSS included), not the maximum over everything run before.
_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": done.returncode, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "peak_mb": usage.ru_maxrss / 1024, "wall_s": time.perf_counter() - start,
                  "stdout": done.stdout[-20000:], "stderr": done.stderr[-50000:]}))
"""


def measure(args: list[str], cwd: Path | None = None, env: dict | None = None) -> dict:
    """Run ``python -m emo_core ARGS`` once: {rc, cpu_s, peak_mb, wall_s, stdout, stderr}."""
    command = [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "emo_core", *args]
    base = dict(os.environ if env is None else env)
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), base.get("PYTHONPATH")]))
    done = subprocess.run(command, cwd=cwd or REPO, env=base, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--help-only", action="store_true", help="measure --help only")
    options = parser.parse_args()
    runs = [["--help"], ["generate", "--help"]]
    if not options.help_only:
        runs += [["demo"], ["demo", "--talking-cartoon"]]
    with tempfile.TemporaryDirectory(prefix="emo-bench-startup.") as tmp:
        env = dict(os.environ, EMO_PORTRAIT_CACHE=str(Path(tmp) / "cache"))
        print(f"{'command':<32} {'CPU s':>7} {'peak MB':>8} {'wall s':>7}")
        for args in runs:
            result = measure(args, cwd=Path(tmp), env=env)
            if result["rc"] != 0:
                print(result["stderr"], file=sys.stderr)
                return 1
            name = "python -m emo_core " + " ".join(args)
            print(f"{name:<32} {result['cpu_s']:7.2f} {result['peak_mb']:8.0f} "
                  f"{result['wall_s']:7.1f}", flush=True)
    print(f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
