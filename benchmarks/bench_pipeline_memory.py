"""Peak memory of a whole `generate` run for 10 s vs 60 s of audio (tiny demo config).

Each length runs in its own process (ru_maxrss is per process), on speech made by looping the
bundled ARCTIC clip. Generation streams clip by clip, so the peak should not grow with length:
the target is peak(60 s) <= 1.15 x peak(10 s). Prints both figures, the ratio, and the peak above
each process's baseline after imports. Exit code 1 when the target is missed.

    python benchmarks/bench_pipeline_memory.py [--weights DIR] [--size 64] [--steps 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "emo_core" / "samples"
TARGET_RATIO = 1.15


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def looped_speech(seconds: float, path: Path) -> Path:
    with wave.open(str(SAMPLES / "speech_arctic_a0007.wav")) as source:
        params, frames = source.getparams(), source.readframes(source.getnframes())
    needed = int(seconds * params.framerate) * params.sampwidth * params.nchannels
    data = (frames * (needed // len(frames) + 1))[:needed]
    with wave.open(str(path), "wb") as out:
        out.setparams(params)
        out.writeframes(data)
    return path


def child(args) -> None:
    sys.path.insert(0, str(REPO))
    import torch

    from emo_core.pipeline.run import GenerateRequest, generate_video
    from emo_core.pipeline.settings import GenerationSettings

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        audio = looped_speech(args.seconds, Path(tmp) / "speech.wav")
        baseline = rss_mib()
        request = GenerateRequest(
            checkpoint=args.weights / "emo.safetensors", wav2vec=args.weights / "wav2vec2",
            mediapipe=SAMPLES / "mediapipe", image=SAMPLES / "portrait_astronaut.png",
            audio=audio, out=Path(tmp) / "out.mp4",
            settings=GenerationSettings(size=args.size, steps=args.steps),
        )
        generate_video(request)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": args.seconds, "baseline_mib": baseline, "peak_mib": peak}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None, help="demo weights folder")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    if args.weights is None:
        sys.path.insert(0, str(REPO))
        from emo_core.cli.cmd_demo import default_cache, ensure_demo_weights

        args.weights = ensure_demo_weights(default_cache() / "demo-weights")
    results = {}
    for seconds in (10.0, 60.0):
        command = [sys.executable, __file__, "--child", "--seconds", str(seconds),
                   "--weights", str(args.weights), "--size", str(args.size),
                   "--steps", str(args.steps)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[seconds] = json.loads(output.strip().splitlines()[-1])
        r = results[seconds]
        print(f"{seconds:>5.0f} s audio: peak RSS {r['peak_mib']:.1f} MiB "
              f"(baseline after imports {r['baseline_mib']:.1f} MiB, "
              f"above baseline {r['peak_mib'] - r['baseline_mib']:.1f} MiB)")
    ratio = results[60.0]["peak_mib"] / results[10.0]["peak_mib"]
    print(f"peak ratio 60 s / 10 s = {ratio:.3f} (target <= {TARGET_RATIO})")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
