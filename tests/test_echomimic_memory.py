"""EchoMimic memory is flat in video length apart from the latents (issue 21): every denoiser
call sees one 12-frame context window, and the activations of one call (largest single
sub-module output, sum of all sub-module outputs) are the same for a 24- and a 96-frame video.
Deterministic counts on the meta device (``benchmarks/bench_echomimic_memory.py``, tiny preset),
through the family's own ``start_video`` + ``predict``, the calls the clip loop makes."""

from __future__ import annotations

import math

import pytest

from benchmarks.bench_echomimic_memory import profile_step
from benchmarks.echomimic_flops import build_models

CONTEXT, OVERLAP = 12, 3


@pytest.mark.parametrize(("variant", "rows"), [("normal", 2), ("acc", 1)])
def test_one_window_of_activations_per_call_whatever_the_length(variant, rows):
    models = build_models(variant, "tiny", "meta")
    short, long = (profile_step(models, frames, size=64) for frames in (24, 96))
    for line in (short, long):
        assert line["cfg_rows"] == rows
        assert line["max_frames_per_call"] == CONTEXT
        # windows start every context - overlap frames (EchoMimic's uniform schedule)
        assert line["denoiser_calls"] == math.ceil(line["frames"] / (CONTEXT - OVERLAP))
    for key in ("peak_module_output_elements", "activation_elements_per_call"):
        assert short[key] == long[key] > 0, key
    assert long["latent_elements"] == 4 * short["latent_elements"]  # what grows, by design
