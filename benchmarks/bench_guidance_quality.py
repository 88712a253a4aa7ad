"""Quality of guidance schedules on the proof-of-learning weights (not a timed test, CPU).

Generates the proof's held-out clips (identities 100000.., audio 200000.., 32 frames, 64 px, 20
steps, the proof's settings) with the committed tiny trained weights
(``benchmarks/results/prove_learning/tiny_emo``) once per guidance scheme and generation seed, and
measures what the proof measures, with the proof's own :class:`Evaluator` code:

* ``lip_sync_corr``: mean over clips of r(mouth opening, audio envelope) at speed 0;
* ``identity_error``: mean RGB error of skin + hair colours against the own reference, speed 0;
* ``speed_slope``: slope of measured head speed over requested speeds 0..5 deg/frame.

The proof's "audio dropped" and long-video runs are left out (they do not depend on the
schedule's cost/quality trade-off more than these and would triple the CPU time). Sampling noise:
the same figures for several generation seeds of one scheme (``--seeds``); a scheme's figures
are within noise of the default when they differ from its mean by at most two standard
deviations across seeds; the paired differences themselves (same clip, same seed) say more about
a small loss: ``--summary`` also prints their mean, SD, range and sign count per scheme
(``bench_preset_quality.paired``). Prints (and appends to ``--out``) one JSON object per scheme
and seed; ``--summary`` prints the comparison of what ``--out`` holds:

    python benchmarks/bench_guidance_quality.py --schemes separate refresh-3 --seeds 0 1 2 \
        --speeds 0 5
    python benchmarks/bench_guidance_quality.py --summary
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

from benchmarks.guidance_schemes import SCHEMES  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
WEIGHTS = RESULTS / "prove_learning" / "tiny_emo"

def measure(evaluator, seeds, speeds, frames: int) -> dict:
    """Lip sync r and identity error (speed-0 videos) and the speed slope over ``speeds``."""
    from emo_core.training.procedural.clips import make_clip
    from emo_core.training.procedural.evaluate import correlation
    from emo_core.training.procedural.faces import measure_angle, measure_mouth

    lip, ident, measured = [], [], []
    for speed in speeds:
        values = []
        for identity_seed, audio_seed in seeds:
            clip = make_clip(identity_seed, audio_seed, frames, 0.0, evaluator.size)
            video = evaluator.generate(clip, float(speed))
            values.append(float(np.abs(np.diff(measure_angle(video))).mean()))
            if speed == speeds[0]:
                lip.append(correlation(measure_mouth(video), clip.opening))
                ident.append(evaluator._identity_errors(video, clip, identity_seed)[0])
        measured.append(float(np.mean(values)))
    return {"lip_sync_corr": float(np.mean(lip)), "lip_sync_corr_per_sample": lip,
            "identity_error": float(np.mean(ident)), "identity_error_per_sample": ident,
            "speed_measured": measured,
            "speed_slope": float(np.polyfit(speeds, measured, 1)[0])}


def summary(records: list[dict], default: str = "separate") -> list[dict]:
    """Per scheme: mean figures over its seeds, the paired difference from ``default`` on the
    same seeds, and ``default``'s noise (two standard deviations across its seeds). The slope is
    taken between the first and last requested speed, so runs over 0..5 and over (0, 5) agree."""
    def figures(record):
        measured = record["speed_measured"]
        return np.array([record["lip_sync_corr"], record["identity_error"],
                         (measured[-1] - measured[0]) / 5.0])

    base = {r["seed"]: figures(r) for r in records if r["scheme"] == default}
    noise = 2 * np.std(list(base.values()), axis=0, ddof=1) if len(base) > 1 else None
    rows = []
    for name in dict.fromkeys(r["scheme"] for r in records):
        own = {r["seed"]: figures(r) for r in records if r["scheme"] == name}
        paired = [own[s] - base[s] for s in own if s in base]
        rows.append({"scheme": name, "seeds": sorted(own),
                     "mean": np.mean(list(own.values()), axis=0).round(4).tolist(),
                     "paired_difference": np.mean(paired, axis=0).round(4).tolist(),
                     "noise": None if noise is None else noise.round(4).tolist()})
    return rows


def emit(record: dict, path: Path) -> None:
    """One result: a JSON line on stdout and appended to ``path`` (kept if the run stops)."""
    print(json.dumps(record), flush=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="generation seeds (noise draws); the held-out clips stay the proof's")
    parser.add_argument("--speeds", nargs="+", type=float, default=None,
                        help="requested speeds of the slope (default: the proof's 0..5)")
    parser.add_argument("--out", type=Path, default=RESULTS / "guidance_quality.jsonl")
    parser.add_argument("--summary", action="store_true",
                        help="only print the per-scheme summary of the records in --out "
                        "(figures: lip sync r, identity error, speed slope)")
    args = parser.parse_args(argv)
    if args.summary:
        records = [json.loads(line) for line in args.out.read_text().splitlines() if line]
        for row in summary(records):
            print(json.dumps(row))
        # The paired differences' spread per clip and seed (lip sync, identity) and per seed
        # (slope), the README's yardstick: mean, SD, range, sign count.
        from benchmarks.bench_preset_quality import paired

        slope = [dict(r, speed_slope=(r["speed_measured"][-1] - r["speed_measured"][0]) / 5.0)
                 for r in records]
        for row in paired(slope, default="separate", key="scheme", per="per_sample"):
            print(json.dumps({"paired": row}))
        return 0

    from emo_core.io.emo_checkpoint import load_emo_checkpoint
    from emo_core.io.wav2vec import load_wav2vec
    from emo_core.pipeline.pipeline import EMOPipeline
    from emo_core.pipeline.settings import GenerationSettings
    from emo_core.training.procedural.evaluate import Evaluator
    from emo_core.training.prove_learning import HELD_OUT_AUDIO, HELD_OUT_IDENTITY, ProofPlan

    plan = ProofPlan()
    pipeline = EMOPipeline(load_emo_checkpoint(WEIGHTS / "emo.safetensors"))
    wav2vec = load_wav2vec(WEIGHTS / "wav2vec2")
    base = GenerationSettings(fps=plan.fps, steps=plan.eval_steps, frames_per_clip=plan.frames,
                              motion_frames=plan.motion_frames, size=plan.size)
    clips = [(HELD_OUT_IDENTITY + i, HELD_OUT_AUDIO + i) for i in range(plan.eval_samples)]
    for name in args.schemes:
        for seed in args.seeds:
            settings = base.replace(seed=seed, **SCHEMES[name])
            started = time.time()
            torch.manual_seed(0)
            figures = measure(Evaluator(pipeline, wav2vec, settings, plan.size), clips,
                              args.speeds or list(plan.speeds), plan.eval_frames)
            record = {"scheme": name, "changes": SCHEMES[name], "seed": seed, **figures,
                      "seconds": round(time.time() - started, 1)}
            emit(record, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
