"""Quality and cost of faster sampling presets against the default, on real speech (CPU).

The committed proof-of-learning weights (``benchmarks/results/prove_learning/tiny_emo``, as in
``bench_guidance_quality.py``) speak three windows of the bundled CMU ARCTIC recording (real
human speech, :data:`WINDOWS`), each with its own held-out cartoon face, once per candidate and
generation seed; every other setting is the product's default (40 DDIM steps for ``default``),
at the proof's 64 px clip layout. Per candidate and seed (means over the clips):

* ``lip_sync_corr``: r(mouth opening measured in the frames, audio loudness per frame), speed 0
  (what ``demo --talking-cartoon`` prints);
* ``identity_error``: mean RGB error of skin + hair colours against the own reference (speed 0);
* ``speed_slope``: (measured head speed at 5 deg/frame requested - at 0) / 5.

Records: ``benchmarks/results/preset_quality.jsonl`` (quality) and ``preset_flops.jsonl``.
``--summary`` pairs each candidate with ``default`` on the same clip and seed: the mean paired
difference, its standard deviation, range and sign count over the clip x seed pairs (the speed
slope too: each clip has its own). ``--flops`` prints GFLOP per generated frame per step
and per frame (all steps) of each candidate at 512 px on the meta device
(``bench_flops.measure``: a clip after the first; the once-per-video parts, the same per frame
for every candidate, are left out).

    OMP_NUM_THREADS=1 python benchmarks/bench_preset_quality.py --seeds 0 1 2
    python benchmarks/bench_preset_quality.py --summary
    python benchmarks/bench_preset_quality.py --flops > benchmarks/results/preset_flops.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_guidance_quality import RESULTS, WEIGHTS, emit  # noqa: E402
from emo_core.pipeline.settings import PRESETS  # noqa: E402

SPEECH = Path(__file__).resolve().parents[1] / "emo_core" / "samples" / "speech_arctic_a0007.wav"
# (start seconds, frames at 25 fps): three 0.64 s windows of the recording's voiced part
# (0.4 .. 3.5 s).
WINDOWS = ((0.4, 16), (1.45, 16), (2.5, 16))
SPEEDS = (0.0, 5.0)
# Candidates: changes from the defaults; ``fast`` is the preset of that name (``PRESETS``), the
# others are what it was measured against and tried next to it.
# ``default``: the product defaults (preset ``standard``).
CANDIDATES = {"default": {}, "fast": dict(PRESETS["fast"]),
              "dpmpp-2m-10": {"steps": 10, "scheduler": "dpmpp-2m"}}


def measure(pipeline, wav2vec, settings, size: int) -> dict:
    """Figures of one candidate and seed over :data:`WINDOWS` (per clip and mean)."""
    from emo_core.audio.waveform import load_audio_file
    from emo_core.training.procedural.evaluate import Evaluator, correlation
    from emo_core.training.procedural.faces import measure_angle, measure_mouth, random_identity
    from emo_core.training.procedural.talking_cartoon import (
        generate_talking_cartoon,
        loudness_per_frame,
    )
    from emo_core.training.prove_learning import HELD_OUT_IDENTITY

    waveform, rate = load_audio_file(SPEECH)
    evaluator = Evaluator(pipeline, wav2vec, settings, size)
    lip, ident, slope = [], [], []
    for index, (start, frames) in enumerate(WINDOWS):
        first = round(start * rate)
        piece = waveform[..., first:first + round(frames * rate / settings.fps)]
        identity = random_identity(np.random.default_rng(HELD_OUT_IDENTITY + index))
        speeds = []
        for speed in SPEEDS:
            torch.manual_seed(0)
            video = generate_talking_cartoon(pipeline, wav2vec, identity, piece, rate, speed,
                                             settings, size)
            speeds.append(float(np.abs(np.diff(measure_angle(video))).mean()))
            if speed == SPEEDS[0]:
                loud = loudness_per_frame(piece, rate, settings.fps, len(video))
                lip.append(float(correlation(measure_mouth(video), loud)))
                own = evaluator._reference_colours(identity)
                ident.append(float(np.abs(_colours(video) - own).mean()))
        slope.append((speeds[-1] - speeds[0]) / (SPEEDS[-1] - SPEEDS[0]))
    return {"lip_sync_corr": float(np.mean(lip)), "lip_sync_corr_per_clip": lip,
            "identity_error": float(np.mean(ident)), "identity_error_per_clip": ident,
            "speed_slope": float(np.mean(slope)), "speed_slope_per_clip": slope}


def _colours(video) -> np.ndarray:
    from emo_core.training.procedural.faces import measure_colours

    return measure_colours(video).mean(axis=0)


FIGURES = ("lip_sync_corr", "identity_error", "speed_slope")


def spread(diffs) -> dict:
    """Mean, SD (ddof 1), min, max and sign count of paired differences."""
    diffs = np.asarray(diffs, dtype=float)
    return {"mean": round(float(diffs.mean()), 4),
            "sd": round(float(diffs.std(ddof=1)), 4) if len(diffs) > 1 else None,
            "min": round(float(diffs.min()), 4), "max": round(float(diffs.max()), 4),
            "negative": int((diffs < 0).sum()), "positive": int((diffs > 0).sum()),
            "pairs": len(diffs)}


def paired(records: list[dict], default: str = "default", key: str = "candidate",
           per: str = "per_clip") -> list[dict]:
    """Per candidate (``record[key]``): mean figures, and per figure the :func:`spread` of the
    paired differences from ``default`` on the same clip and seed (``f"{figure}_{per}"`` lists;
    a figure without them, e.g. an older record's slope, is paired per seed)."""
    base = {r["seed"]: r for r in records if r[key] == default}
    rows = []
    for name in dict.fromkeys(r[key] for r in records):
        own = {r["seed"]: r for r in records if r[key] == name and r["seed"] in base}
        row = {key: name, "changes": next(iter(own.values()))["changes"] if own else {},
               "seeds": sorted(own)}
        for figure in FIGURES:
            row[figure] = round(float(np.mean([r[figure] for r in own.values()])), 4)
            lists = [(own[s].get(f"{figure}_{per}"), base[s].get(f"{figure}_{per}"))
                     for s in own]
            diffs = (np.concatenate([np.subtract(a, b) for a, b in lists])
                     if all(a is not None and b is not None for a, b in lists)
                     else [own[s][figure] - base[s][figure] for s in own])
            row[f"{figure}_paired"] = spread(diffs)
        rows.append(row)
    return rows


def flops(size: int = 512, names=None) -> list[dict]:
    """GFLOP per generated frame per step and per frame (all steps) of each candidate in
    ``names`` (default: all), SD1.5 size on the meta device."""
    from benchmarks.bench_flops import build_pipeline
    from benchmarks.bench_flops import measure as measure_flops
    from emo_core.pipeline.settings import GenerationSettings

    pipe, cache, out = build_pipeline(), {}, []
    for name in names or CANDIDATES:
        changes = CANDIDATES[name]
        steps = changes.get("steps", GenerationSettings().steps)
        others = {k: v for k, v in changes.items() if k != "steps"}
        per_step = measure_flops(pipe, others, size, steps, cache)["total"]
        out.append({"candidate": name, "changes": changes, "size": size, "steps": steps,
                    "gflops_per_frame_step": round(per_step, 4),
                    "gflops_per_frame": round(per_step * steps, 2)})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES),
                        choices=list(CANDIDATES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "preset_quality.jsonl")
    parser.add_argument("--summary", action="store_true",
                        help="print the paired comparison of the records in --out")
    parser.add_argument("--flops", action="store_true",
                        help="print each candidate's GFLOP per frame-step at 512 px (meta)")
    args = parser.parse_args(argv)
    if args.summary:
        records = [json.loads(line) for line in args.out.read_text().splitlines() if line]
        for row in paired(records):
            print(json.dumps(row))
        return 0
    if args.flops:
        for row in flops():
            print(json.dumps(row), flush=True)
        return 0

    from emo_core.io.emo_checkpoint import load_emo_checkpoint
    from emo_core.io.wav2vec import load_wav2vec
    from emo_core.pipeline.pipeline import EMOPipeline
    from emo_core.pipeline.settings import GenerationSettings
    from emo_core.training.prove_learning import ProofPlan

    plan = ProofPlan()
    pipeline = EMOPipeline(load_emo_checkpoint(WEIGHTS / "emo.safetensors"))
    wav2vec = load_wav2vec(WEIGHTS / "wav2vec2")
    base = GenerationSettings(fps=plan.fps, frames_per_clip=plan.frames,
                              motion_frames=plan.motion_frames, size=plan.size)
    for seed in args.seeds:
        for name in args.candidates:
            settings = base.replace(seed=seed, **CANDIDATES[name]).validate()
            started = time.time()
            figures = measure(pipeline, wav2vec, settings, plan.size)
            record = {"candidate": name, "changes": CANDIDATES[name], "seed": seed,
                      "steps": settings.steps, "scheduler": settings.scheduler,
                      "frames": [w[1] for w in WINDOWS], **figures,
                      "seconds": round(time.time() - started, 1)}
            emit(record, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
