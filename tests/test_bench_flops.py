"""benchmarks/bench_flops.py: the meta-device count equals what a real CPU run of the same code
counts (tiny preset), the split adds up, per-clip parts are amortised over the steps, and the SD1.5
lines mark the CLI default (separate guidance, 3 rows) and show joint guidance cheaper."""

from __future__ import annotations

import json

import pytest
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks import bench_flops as bench
from emo_core.pipeline.settings import GUIDANCE_MODES


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every test here on one torch thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def tiny_meta():
    return list(bench.lines(64, 4, preset="tiny", device="meta"))


def test_meta_count_equals_a_real_cpu_run_at_tiny_size(tiny_meta):
    # On CPU, SDPA's fused kernel is invisible to the FLOP counter; the math backend runs the same
    # attention as bmm/softmax, which it counts (the meta device counts it that way too).
    with sdpa_kernel(SDPBackend.MATH):
        real = list(bench.lines(64, 4, preset="tiny", device="cpu"))
    # FLOP counts depend on shapes only: equal up to the printed rounding, in every field.
    assert real == tiny_meta
    assert all(line["split"]["backbone"] > 0 and line["split"]["reference_net"] > 0
               for line in real)


def test_per_clip_parts_are_amortised_over_the_steps(tiny_meta):
    twice = list(bench.lines(64, 8, preset="tiny", device="meta"))
    for four, eight in zip(tiny_meta, twice, strict=True):
        assert eight["split"]["backbone"] == four["split"]["backbone"]
        for name in ("reference_net", "vae_decode", "audio_projection"):
            assert eight["split"][name] == pytest.approx(four["split"][name] / 2, abs=1e-4)


def test_sd15_lines(capsys):
    assert bench.main([]) == 0
    lines = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert [line["mode"] for line in lines] == list(GUIDANCE_MODES)
    by_mode = {line["mode"]: line for line in lines}
    default = [line for line in lines if line["default"]]
    assert len(default) == 1 and default[0]["mode"] == "separate" and default[0]["rows"] == 3
    for line in lines:
        assert (line["size"], line["steps"], line["frames_per_clip"], line["motion_frames"]) == (
            512, 40, 12, 4)
        # Each part is rounded to 1e-4 GFLOP: the sum may differ by six roundings.
        assert sum(line["split"].values()) == pytest.approx(line["gflops_per_frame_step"],
                                                            abs=6e-4)
    separate, joint = by_mode["separate"], by_mode["joint"]
    # Joint guidance batches 2 rows instead of 3; the per-clip parts do not depend on the mode.
    assert joint["gflops_per_frame_step"] < separate["gflops_per_frame_step"]
    assert joint["split"]["reference_net"] == separate["split"]["reference_net"]
    # GFLOP, not a unit slip: an SD1.5 UNet forward is ~0.8 TFLOP per 512 px frame and row.
    assert 2000 < joint["split"]["backbone"] < separate["split"]["backbone"] < 5000
