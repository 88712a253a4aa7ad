"""Peak memory of decoding a big portrait file (``emo_core.image.load_image_file``), each in a
fresh process so that ru_maxrss is that decode alone (issue 23, class 10).

    python benchmarks/bench_image_memory.py [--megapixels 25 80]

One JSON line per (mode, size): ``{"mode", "megapixels", "file_mb", "peak_mb", "baseline_mb",
"decode_mb", "cpu_s"}``; ``decode_mb`` = peak minus the peak of the same process that only
imported the module. Measured (2-core CI machine, 2026-12-07): RGBA 25 MP 1464 -> 557 MB,
RGBA 80 MP (the default limit) 4610 -> 1712 MB peak, before -> after compositing alpha in PIL.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
_CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from emo_core.image import load_image_file
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.process_time()
if sys.argv[2] != "-":
    array = load_image_file(sys.argv[2])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_mb": peak, "baseline_mb": base, "cpu_s": time.process_time() - start}))
"""


def write_image(path: Path, megapixels: float, mode: str) -> None:
    side = int((megapixels * 1e6) ** 0.5)
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    channels = {"RGBA": 4, "RGB": 3}[mode]
    array = np.stack([((ramp[None, :] * (k + 1) + ramp[:, None]) % 256).astype(np.uint8)
                      for k in range(channels)], -1)
    Image.fromarray(np.ascontiguousarray(array), mode).save(path, compress_level=1)


def measure(path: str) -> dict:
    env_limit = {"EMO_MAX_IMAGE_PIXELS": "200000000"}
    import os

    done = subprocess.run([sys.executable, "-c", _CHILD, str(REPO), path], capture_output=True,
                          text=True, check=True, env=dict(os.environ, **env_limit))
    return json.loads(done.stdout)


def main() -> int:
    if sys.argv[1:2] == ["--write"]:
        write_image(Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, nargs="+", default=[25.0])
    parser.add_argument("--modes", nargs="+", default=["RGBA", "RGB"])
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emo-bench-image.") as tmp:
        for mode in options.modes:
            for megapixels in options.megapixels:
                path = Path(tmp) / f"{mode}_{megapixels:g}.png"
                # written by another process: Linux carries a parent's peak RSS into the
                # processes it starts (ru_maxrss survives fork + exec), so this one stays small
                subprocess.run([sys.executable, __file__, "--write", str(path), str(megapixels),
                                mode], check=True)
                result = measure(str(path))
                print(json.dumps({"mode": mode, "megapixels": megapixels,
                                  "file_mb": round(path.stat().st_size / 2**20, 1),
                                  "peak_mb": round(result["peak_mb"]),
                                  "baseline_mb": round(result["baseline_mb"]),
                                  "decode_mb": round(result["peak_mb"] - result["baseline_mb"]),
                                  "cpu_s": round(result["cpu_s"], 2)}), flush=True)
                path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
