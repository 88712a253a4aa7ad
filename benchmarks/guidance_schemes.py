"""Guidance schedules compared by ``bench_flops`` (cost) and ``bench_guidance_quality`` (quality
on the proof-of-learning weights): name -> :class:`GenerationSettings` changes from the built-in
defaults; ``separate`` is the default before the schedule (all three rows at every step)."""

from __future__ import annotations

ALL_STEPS = {"guidance_start": 0.0, "guidance_end": 1.0, "guidance_refresh": 1}

SCHEMES = {
    "separate": {"guidance_mode": "separate", **ALL_STEPS},
    "joint": {"guidance_mode": "joint", **ALL_STEPS},
    "interval-0.3": {"guidance_mode": "separate", **ALL_STEPS, "guidance_end": 0.3},
    "refresh-3": {"guidance_mode": "separate", **ALL_STEPS, "guidance_refresh": 3},
    "interval-0.6-refresh-2": {"guidance_mode": "separate", **ALL_STEPS, "guidance_end": 0.6,
                               "guidance_refresh": 2},
    "joint-interval-0.8": {"guidance_mode": "joint", **ALL_STEPS, "guidance_end": 0.8},
}
