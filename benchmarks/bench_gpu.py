"""Seconds of GPU time per second of generated video (CUDA only; never run from tests or CI).

SD1.5-size EMO with random weights (:func:`benchmarks.bench_flops.build_pipeline`, the same
models the FLOP count uses) in bf16 on one CUDA device, 512 px, 25 fps, the CLI's default
guidance schedule; the sampler is the pipeline users run (``EMOPipeline.generate_frames``: the
per-clip ReferenceNet and condition encoders, every denoising step, VAE decode to uint8 frames).
One warm-up clip first (CUDA kernels, cuDNN autotune, and compilation when asked), then
``--clips`` clips are timed with ``torch.cuda.synchronize``. Presets:

* ``default``: the CLI defaults (40 DDIM steps);
* ``fast``: 16 steps of DPM-Solver++(2M) (a multistep scheduler), same guidance schedule.

``--compile`` compiles the Backbone and ReferenceNet through the pipeline's own compile setting
(``GenerationSettings.compile``) where this build has one; where it has none, the run says so
and stops (exit 2) instead of timing something else. Prints one JSON object per run:

    python benchmarks/bench_gpu.py [--preset default fast] [--compile] [--clips 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emo_core.pipeline.settings import GenerationSettings  # noqa: E402

PRESETS = {"default": {}, "fast": {"steps": 16, "scheduler": "dpmpp-2m"}}
NO_CUDA = ("bench_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False here); it times "
           "SD1.5-size sampling in bf16 and is never run on CPU. Run it on a machine with an "
           "NVIDIA GPU and a CUDA build of torch.")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", nargs="+", choices=list(PRESETS), default=list(PRESETS))
    parser.add_argument("--compile", action="store_true",
                        help="also time each preset with the Backbone and ReferenceNet compiled")
    parser.add_argument("--clips", type=int, default=4, help="timed clips after one warm-up")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--fps", type=float, default=25.0)
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error("--clips must be at least 1")
    return args


def compile_supported() -> bool:
    """Whether this build's settings carry a compile switch (added by the compile work)."""
    return "compile" in {field.name for field in dataclasses.fields(GenerationSettings)}


def _inputs(pipe, size: int, frames: int, fps: float):
    """Random reference latents, audio features, a full face mask for ``frames`` frames."""
    import numpy as np

    from emo_core.audio.features import AudioFeatures
    from emo_core.pipeline.reference import EncodedReference

    cfg = pipe.models.audio_projection.config
    generator = torch.Generator().manual_seed(0)
    windows = torch.randn(frames, cfg.seq_len, cfg.blocks, cfg.channels, generator=generator)
    reference = EncodedReference(torch.randn(1, 4, size // 8, size // 8, generator=generator),
                                 np.zeros((size, size, 3), np.uint8))
    return reference, AudioFeatures(windows, frames, fps, torch.zeros(1)), torch.ones(size, size)


def time_run(pipe, settings: GenerationSettings, clips: int) -> dict:
    """Seconds per video-second over ``clips`` timed clips after one warm-up clip."""
    frames = settings.frames_per_clip
    reference, audio, mask = _inputs(pipe, settings.size, frames * (clips + 1), settings.fps)
    stream = pipe.generate_frames(reference, audio, mask, 2.0, settings)
    produced = 0
    while produced < frames:  # the warm-up clip
        produced += len(next(stream))
    torch.cuda.synchronize()
    started = time.perf_counter()
    timed = sum(len(chunk) for chunk in stream)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"frames": timed, "seconds": round(seconds, 3),
            "seconds_per_video_second": round(seconds / (timed / settings.fps), 3),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def main(argv=None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    if args.compile and not compile_supported():
        print("--compile: this build has no compile setting (GenerationSettings.compile); "
              "time without --compile, or update to a build with it", file=sys.stderr)
        return 2
    from benchmarks.bench_flops import build_pipeline

    torch.backends.cuda.matmul.allow_tf32 = True
    pipe = build_pipeline("sd15", "cuda")
    pipe = type(pipe)(pipe.models, "cuda", torch.bfloat16)
    for compiled in (False, True) if args.compile else (False,):
        for preset in args.preset:
            settings = GenerationSettings(size=args.size, fps=args.fps, **PRESETS[preset])
            if compiled:
                settings = settings.replace(compile=True)
            record = {"preset": preset, "compile": compiled, "steps": settings.steps,
                      "scheduler": settings.scheduler, "guidance_mode": settings.guidance_mode,
                      "guidance_end": settings.guidance_end,
                      "guidance_refresh": settings.guidance_refresh, "size": settings.size,
                      "fps": settings.fps, "dtype": "bf16",
                      "device": torch.cuda.get_device_name(),
                      **time_run(pipe, settings, args.clips)}
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
