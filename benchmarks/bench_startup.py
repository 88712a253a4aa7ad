"""CPU seconds and peak memory of what a newcomer runs first: ``--help``, ``demo`` and
``demo --talking-cartoon`` (each in a fresh process; the demo with an empty weights cache, so its
first run, weights building included, is what is measured).

    python benchmarks/bench_startup.py            # all three
    python benchmarks/bench_startup.py --help-only
    python benchmarks/bench_startup.py --refusals # fail-fast refusals, JSON lines

``--refusals`` times refusals that need only options, paths and file headers (a PNG as
``--checkpoint``, an output that is an input, a cache under a file...), one JSON line each:
``{"case", "rc", "cpu_s", "peak_mb", "wall_s", "torch_imported"}``; the target (issue 23) is
rc 2, <= 1 s of CPU and <= 150 MB, with torch never imported.

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


def measure(args: list[str], cwd: Path | None = None, env: dict | None = None,
            module: bool = True) -> dict:
    """Run ``python -m emo_core ARGS`` once (``module=False``: ``python ARGS``): {rc, cpu_s,
    peak_mb, wall_s, stdout, stderr}."""
    command = [sys.executable, "-c", _WRAPPER, sys.executable,
               *(["-m", "emo_core"] if module else []), *args]
    base = dict(os.environ if env is None else env)
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), base.get("PYTHONPATH")]))
    done = subprocess.run(command, cwd=cwd or REPO, env=base, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def refusal_cases(root: Path) -> dict[str, list[str]]:
    """Refusal command lines over small files made in ``root`` (no weights needed)."""
    from PIL import Image

    portrait, audio, afile = root / "p.png", root / "in.mp4", root / "afile"
    Image.new("RGB", (64, 64)).save(portrait)
    audio.write_bytes(b"RIFF" + b"\0" * 64)
    afile.write_text("x")
    (root / "png.safetensors").write_bytes(portrait.read_bytes())
    (root / "w2v").mkdir(exist_ok=True)

    def generate(**change):
        values = {"--checkpoint": root / "png.safetensors", "--wav2vec": root / "w2v",
                  "--mediapipe": REPO / "emo_core" / "samples" / "mediapipe",
                  "--image": portrait, "--audio": audio, "--out": root / "x.mp4"}
        values.update(change)
        return ["generate", *[str(x) for kv in values.items() for x in kv]]

    return {
        "generate_png_checkpoint": generate(**{"--checkpoint": portrait}),
        "generate_garbage_safetensors": generate(),
        "generate_out_is_audio": generate(**{"--out": audio}),
        "generate_fps_zero": [*generate(), "--fps", "0"],
        "generate_out_under_file": generate(**{"--out": afile / "x.mp4"}),
        "demo_out_proc": ["demo", "--out", "/proc/emo-bench.mp4"],
        "demo_cache_is_file": ["demo", "--weights", str(afile / "w")],
        "demo_weights_out_file": ["demo-weights", "--out", str(afile)],
        "convert_hallo_out_is_input": ["convert-hallo", "--pretrained-models", str(root),
                                       "--out", str(root / "png.safetensors")],
        "init_checkpoint_out_is_sd15": ["init-checkpoint", "--sd15", str(root / "png.safetensors"),
                                        "--motion-module", str(portrait), "--out",
                                        str(root / "png.safetensors")],
        "train_missing_config": ["train", "--stage", "1", "--config", str(root / "none.yaml")],
    }


def measure_refusals() -> int:
    """One JSON line per refusal case; exit 1 when one misses its target."""
    failed = 0
    with tempfile.TemporaryDirectory(prefix="emo-bench-refusal.") as tmp:
        env = dict(os.environ, EMO_PORTRAIT_CACHE=str(Path(tmp) / "cache"))
        for name, args in refusal_cases(Path(tmp)).items():
            result = measure(["-X", "importtime", "-m", "emo_core", *args], cwd=Path(tmp),
                             env=env, module=False)
            torch = any(line.split("|")[-1].strip() == "torch" for line in
                        result["stderr"].splitlines() if line.startswith("import time:"))
            line = {"case": name, "rc": result["rc"], "cpu_s": round(result["cpu_s"], 2),
                    "peak_mb": round(result["peak_mb"]), "wall_s": round(result["wall_s"], 2),
                    "torch_imported": torch}
            ok = result["rc"] == 2 and line["cpu_s"] <= 1.0 and line["peak_mb"] <= 150 \
                and not torch
            failed += not ok
            print(json.dumps({**line, "ok": ok}), flush=True)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--help-only", action="store_true", help="measure --help only")
    parser.add_argument("--refusals", action="store_true",
                        help="time fail-fast refusals instead (JSON lines)")
    options = parser.parse_args()
    if options.refusals:
        return measure_refusals()
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
