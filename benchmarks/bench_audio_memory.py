"""Peak memory of wav2vec feature extraction: a 10-minute clip vs a 30-second one.

Each duration runs in a fresh subprocess with a tiny random wav2vec2 (no weights needed). Inside,
after the model, the synthetic 16 kHz input waveform and one warm-up call exist, the kernel's
peak-RSS counter is reset (``/proc/self/clear_refs``, Linux), the extraction runs, and
``VmHWM - baseline`` is the processing peak above the input. The children run with
``MALLOC_MMAP_THRESHOLD_=65536`` so freed tensors go back to the OS at once: RSS then measures live
memory, not what glibc keeps cached from earlier calls (without it the figures depend on the
warm-up's leftovers). tracemalloc's peak (Python-level allocations) is printed too; torch's CPU
tensors are only visible in RSS.

The result (the ``(F + 4, L, C)`` float32 buffer behind ``windows``) is an output that must grow
with duration; the pass/fail check is on the processing peak above input *and* result, and the
ratio including the result is printed next to it.

    python benchmarks/bench_audio_memory.py [--seconds 30 600] [--chunk-seconds 20] [--limit 1.2]
        [--rate 44100 --channels 2]   # resampling path; the 16 kHz mono copy counts as result

Exit code 1 when the long clip's processing peak exceeds ``limit`` x the short one's.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RATE = 16_000


def rss_kib(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def synthetic_speechlike(seconds: float, rate: int = RATE):
    """Deterministic float32 ``(T,)``: a gliding tone with a syllable-rate envelope plus noise,
    generated in 10 s blocks so no float64 copy of the whole clip ever exists."""
    import torch

    total = int(seconds * rate)
    out = torch.empty(total)
    gen = torch.Generator().manual_seed(0)
    for start in range(0, total, 10 * rate):
        t = torch.arange(start, min(start + 10 * rate, total), dtype=torch.float64) / rate
        pitch = 140 + 40 * torch.sin(2 * math.pi * 0.3 * t)
        envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t).clamp(min=0)
        tone = envelope * torch.sin(2 * math.pi * torch.cumsum(pitch, 0) / rate)
        noise = 0.02 * torch.randn(t.shape[0], generator=gen, dtype=torch.float64)
        out[start:start + t.shape[0]] = (0.3 * tone + noise).float()
    return out


def measure(seconds: float, chunk_seconds: float, fps: float, rate: int, channels: int) -> dict:
    """Runs in the child process: one extraction, memory figures as a dict."""
    import torch
    from transformers import Wav2Vec2Model

    sys.path.insert(0, str(REPO))
    from emo_core.audio.features import extract_audio_features
    from emo_core.models.presets import wav2vec2_config

    torch.set_num_threads(1)  # the figure is about memory; one thread keeps it reproducible
    torch.manual_seed(0)
    model = Wav2Vec2Model(wav2vec2_config("tiny")).eval()
    warm_up = synthetic_speechlike(45.0, rate).expand(channels, -1)
    extract_audio_features(model, warm_up, rate, fps, chunk_seconds=chunk_seconds)  # lazy inits
    del warm_up
    waveform = synthetic_speechlike(seconds, rate)
    if channels > 1:  # (C, T): a real copy per channel, as a decoded file would be
        waveform = torch.stack([waveform * (0.5 + c / channels) for c in range(channels)])
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # baseline = live memory only
    baseline = rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    tracemalloc.start()
    began = time.perf_counter()
    features = extract_audio_features(model, waveform, rate, fps, chunk_seconds=chunk_seconds)
    elapsed = time.perf_counter() - began
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = rss_kib("VmHWM")
    base = features.windows.untyped_storage()
    result_bytes = base.nbytes()
    if features.waveform_16k.untyped_storage().data_ptr() != waveform.untyped_storage().data_ptr():
        result_bytes += features.waveform_16k.untyped_storage().nbytes()
    return {"seconds": seconds, "frames": features.num_frames, "elapsed_s": elapsed,
            "input_mb": waveform.numel() * 4 / 2**20, "result_mb": result_bytes / 2**20,
            "peak_above_input_mb": (peak - baseline) / 1024,
            "tracemalloc_peak_mb": traced_peak / 2**20}


def run_child(seconds: float, args) -> dict:
    command = [sys.executable, __file__, "--child", str(seconds), "--chunk-seconds",
               str(args.chunk_seconds), "--fps", str(args.fps), "--rate", str(args.rate),
               "--channels", str(args.channels)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs=2, default=(30.0, 600.0))
    parser.add_argument("--chunk-seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--limit", type=float, default=1.2)
    parser.add_argument("--rate", type=int, default=RATE, help="input sample rate (Hz)")
    parser.add_argument("--channels", type=int, default=1, help="input channels")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.child, args.chunk_seconds, args.fps, args.rate,
                                 args.channels)))
        return 0
    short, long = (run_child(s, args) for s in args.seconds)
    for row in (short, long):
        print(f"{row['seconds']:7.0f} s audio, {row['frames']:6d} frames: input "
              f"{row['input_mb']:6.1f} MB, processing peak above input "
              f"{row['peak_above_input_mb']:6.1f} MB (of which result {row['result_mb']:5.1f} MB), "
              f"tracemalloc peak {row['tracemalloc_peak_mb']:5.2f} MB, {row['elapsed_s']:.1f} s")
    with_result = long["peak_above_input_mb"] / short["peak_above_input_mb"]
    ratio = ((long["peak_above_input_mb"] - long["result_mb"])
             / (short["peak_above_input_mb"] - short["result_mb"]))
    print(f"processing peak ratio long/short (above input and result): {ratio:.3f} "
          f"(limit {args.limit}); including the result buffers: {with_result:.3f}")
    return 0 if ratio <= args.limit else 1

if __name__ == "__main__":
    sys.exit(main())
