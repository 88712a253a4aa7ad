"""torch.compile of the EMO core (tiny preset, CPU inductor): each network's UNet call is one
graph without breaks, steps and clips of one layout reuse it (no recompile), and the compiled
outputs equal eager ones.

Runs in float64: inductor fuses and reorders arithmetic (other rounding), and these random
non-zero weights amplify float32 rounding to 2e-4 over the network (measured; 2.7e-5 differ
already between two eager attention kernels), so float64 makes the 1e-4 bound test the maths.
One compile per network keeps the test within CI time; ``benchmarks/bench_compile.py`` runs
every guidance layout and several clips.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from benchmarks.bench_compile import GraphCounter
from benchmarks.core_inputs import broadcast, nonzero_models, sampling_inputs

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                                reason="inductor on CPU needs a C compiler")
ROWS, AUDIO_ROWS = (False, True), (False, True)  # joint guidance: u, ra


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every test here on one torch thread (see conftest.one_torch_thread)."""


def _double(inputs: dict) -> dict:
    return {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in inputs.items()}


def _step(models, reference, backbone, motion, t):
    features = broadcast(models.reference_net(reference["reference_latents"], motion,
                                              context=reference["context"]), len(ROWS))
    inputs = dict(backbone)
    return features, models.backbone(inputs.pop("sample"), t, reference=features, **inputs)


def test_compiled_core_equals_eager_with_one_graph_and_no_recompiles():
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    torch._dynamo.reset()
    models = nonzero_models().double().eval()
    reference, backbone = (_double(d) for d in sampling_inputs(models, ROWS, AUDIO_ROWS))
    motion = reference["motion_latents"]
    with torch.no_grad():
        eager = [_step(models, reference, backbone, motion, torch.tensor(t)) for t in (900, 100)]
        counters = {"reference_net": GraphCounter("inductor"), "backbone": GraphCounter("inductor")}
        for name, counter in counters.items():
            getattr(models, name).compile_unet(backend=counter)
        try:
            # Two "clips" (ReferenceNet twice) and two steps: one layout, one graph each.
            compiled = [_step(models, reference, backbone, motion, torch.tensor(t))
                        for t in (900, 100)]
            calls = {name: getattr(models, name).__dict__["compiled_calls"] for name in counters}
        finally:
            for name in counters:
                getattr(models, name).compile_unet(False)
    for name, counter in counters.items():
        entries = [len(_debug_get_cache_entry_list(c)) for c in calls[name].code_objects()]
        assert (counter.graphs, entries) == (1, [1]), name  # 1 graph, 0 breaks, 0 recompiles
    for (features_e, out_e), (features_c, out_c) in zip(eager, compiled, strict=True):
        assert (out_c - out_e).abs().max() <= 1e-4
        for key, tokens in features_e.bank.items():
            assert (features_c.bank[key] - tokens).abs().max() <= 1e-4, key
        for a, b in zip(features_e.motion, features_c.motion, strict=True):
            assert (a - b).abs().max() <= 1e-4


def test_explain_finds_one_graph_in_a_reference_net_forward():
    models = nonzero_models().eval()
    reference, _ = sampling_inputs(models, ROWS, AUDIO_ROWS)
    with torch.no_grad():
        found = torch._dynamo.explain(models.reference_net)(**reference)
    assert (found.graph_count, found.graph_break_count) == (1, 0)
