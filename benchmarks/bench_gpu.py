"""Seconds of GPU time per second of generated video (CUDA only; never run from tests or CI).

SD1.5-size EMO with random weights (:func:`benchmarks.bench_flops.build_pipeline`, the same
models the FLOP count uses) in bf16 on one CUDA device, 512 px, 25 fps, the CLI's default
guidance schedule; the sampler is the pipeline users run (``EMOPipeline.generate_frames``: the
per-clip ReferenceNet and condition encoders, every denoising step, VAE decode to uint8 frames).
Each run first generates a warm-up video whose clips have every layout the timed video's clips
have (:func:`warmup_frames`: the first clip, a later full clip, a shorter last clip; each clip
runs every guidance row layout), so CUDA kernels, cuDNN autotune and, with ``--compile``, every
compiled graph are ready before the clock starts. Then the peak GPU memory counter is reset and a
fresh video of ``--clips`` + 1 clips is generated: ``seconds`` / ``seconds_per_video_second``
time the clips after its first (the steady state), ``whole_video_seconds`` the whole video, both
with ``torch.cuda.synchronize``; ``peak_gpu_gib`` is that video's peak. Presets:

* ``default``: the CLI defaults (40 DDIM steps);
* ``fast``: 16 steps of DPM-Solver++(2M) (a multistep scheduler), same guidance schedule.

``--compile`` compiles the Backbone and ReferenceNet through the pipeline's own compile setting
(``GenerationSettings.compile``) where this build has one; where it has none, the run says so
and stops (exit 2) instead of timing something else. Compiled graphs are cached across runs by
inductor's own caches (FX graph cache, AOT autograd cache, autotune results, Triton kernels) in
``--cache-dir``, default ``$TORCHINDUCTOR_CACHE_DIR`` or ``~/.cache/emo-portrait/inductor``
(:data:`DEFAULT_CACHE_DIR`); the folder is set before anything compiles and printed in every
record (``inductor_cache_dir``), so a second run skips the backend compile of every graph
(dynamo still traces each layout once per process). Prints one JSON object per run:

    python benchmarks/bench_gpu.py [--preset default fast] [--compile] [--clips 4] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emo_core.pipeline.settings import PRESETS as SETTING_PRESETS  # noqa: E402
from emo_core.pipeline.settings import GenerationSettings  # noqa: E402

# The timed runs: the product defaults and the CLI's --preset fast (one table: settings.PRESETS).
PRESETS = {"default": {}, "fast": dict(SETTING_PRESETS["fast"])}
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/emo-portrait/inductor")
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
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"inductor's cache folder (compiled graphs kept across runs); "
                             f"default ${CACHE_ENV} or {DEFAULT_CACHE_DIR}")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error("--clips must be at least 1")
    return args


def compile_supported() -> bool:
    """Whether this build's settings carry a compile switch (added by the compile work)."""
    return "compile" in {field.name for field in dataclasses.fields(GenerationSettings)}


def inductor_cache_dir(requested: Path | None = None) -> Path:
    """The folder inductor caches compiled graphs in: ``requested``, else ``$TORCHINDUCTOR_CACHE_DIR``,
    else :data:`DEFAULT_CACHE_DIR`. Exported as ``TORCHINDUCTOR_CACHE_DIR`` (inductor reads it
    when it first caches), so call this before anything compiles."""
    folder = requested or Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)
    folder = folder.expanduser().resolve()
    os.environ[CACHE_ENV] = str(folder)
    return folder


def clip_layouts(spans) -> set[tuple[bool, int]]:
    """What makes a clip's compiled graphs differ: first clip or not (ReferenceNet rows, motion
    features) and its length (the last clip generates only the frames it keeps)."""
    return {(span.index == 0, span.length) for span in spans}


def warmup_frames(pipe, settings: GenerationSettings, frames: int) -> int:
    """Frames of a warm-up video whose clips have every layout (:func:`clip_layouts`) of a
    ``frames`` video's clips: the first clip, then one clip of each later length, the shorter
    last clip last."""
    spans = pipe.family.clip_spans(frames, settings)
    if len(spans) == 1:
        return frames
    later = sorted({span.length for span in spans[1:]}, reverse=True)
    return spans[0].length + sum(later)


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


def _generate(pipe, settings: GenerationSettings, frames: int, on_first_clip=None) -> int:
    """One whole video of ``frames`` frames through ``generate_frames``; ``on_first_clip()`` is
    called (after a synchronize) once the first clip's frames are out. Returns frames made."""
    reference, audio, mask = _inputs(pipe, settings.size, frames, settings.fps)
    produced = 0
    for chunk in pipe.generate_frames(reference, audio, mask, 2.0, settings):
        first = produced < settings.frames_per_clip <= produced + len(chunk)
        produced += len(chunk)
        if first and on_first_clip is not None:
            torch.cuda.synchronize()
            on_first_clip()
    return produced


def time_run(pipe, settings: GenerationSettings, clips: int) -> dict:
    """Seconds per video-second of the clips after the first of a ``clips + 1`` clip video,
    after a warm-up video that has every clip layout of the timed one; peak memory of the
    timed video only."""
    frames = settings.frames_per_clip * (clips + 1)
    _generate(pipe, settings, warmup_frames(pipe, settings, frames))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    marks = {"start": time.perf_counter()}
    _generate(pipe, settings, frames, lambda: marks.update(steady=time.perf_counter()))
    torch.cuda.synchronize()
    end = time.perf_counter()
    seconds, timed = end - marks["steady"], frames - settings.frames_per_clip
    return {"frames": timed, "seconds": round(seconds, 3),
            "seconds_per_video_second": round(seconds / (timed / settings.fps), 3),
            "whole_video_seconds": round(end - marks["start"], 3),
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

    cache_dir = inductor_cache_dir(args.cache_dir)
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
                      "inductor_cache_dir": str(cache_dir),
                      **time_run(pipe, settings, args.clips)}
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
