"""Graph counts of the EMO core under ``torch.compile`` (tiny preset, CPU).

Two sources, one JSON object per line, ``{"module": "backbone" | "reference_net", "source":
"explain" | "run", "graphs": N, "graph_breaks": N, "recompiles": N, ...}``:

* ``explain``: ``torch._dynamo.explain`` on one forward of each network (every branch active:
  reference with CFG rows, motion frames, audio rows, speed, face);
* ``run``: both networks' UNet calls compiled (``compile_unet``) through a generation-shaped
  loop: several clips (the first without motion frames), several steps per clip, and every
  guidance row layout (separate u/r/ra, joint u/ra, both scales 1 -> ra only). ``graphs`` is
  the number of graphs dynamo produced, ``recompiles`` the cache entries beyond the first of
  every compiled code object (a guard failure that compiled again), ``layouts`` the distinct
  call layouts (each compiles its own graph once, see ``emo_core/models/compiled.py``).

    python benchmarks/bench_compile.py [--backend eager|inductor] [--clips 3] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.core_inputs import broadcast, nonzero_models, sampling_inputs  # noqa: E402
from emo_core.pipeline.guidance import plan_guidance  # noqa: E402

# (mode, reference scale, audio scale): 3 rows, 2 rows, 1 row.
GUIDANCE = (("separate", 2.0, 3.5), ("joint", 2.0, 1.0), ("separate", 1.0, 1.0))


def explain_lines(models) -> list[dict]:
    rows, audio_rows = (False, True, True), (False, False, True)
    reference, backbone = sampling_inputs(models, rows, audio_rows)
    out = []
    with torch.no_grad():
        found = torch._dynamo.explain(models.reference_net)(**reference)
        out.append(_line("reference_net", "explain", found.graph_count, found.graph_break_count))
        features = broadcast(models.reference_net(**reference), len(rows))
        sample = backbone.pop("sample")
        found = torch._dynamo.explain(models.backbone)(sample, torch.tensor(500),
                                                       reference=features, **backbone)
        out.append(_line("backbone", "explain", found.graph_count, found.graph_break_count))
    return out


def _line(module, source, graphs, breaks, recompiles=0, **extra) -> dict:
    return {"module": module, "source": source, "graphs": graphs, "graph_breaks": breaks,
            "recompiles": recompiles, **extra}


class GraphCounter:
    """A dynamo backend that counts graphs and hands them to ``backend``."""

    def __init__(self, backend: str):
        self.backend = backend
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        if self.backend == "eager":
            return gm.forward
        from torch._inductor import compile_fx

        return compile_fx.compile_fx(gm, example_inputs)


def run_lines(models, backend: str = "eager", clips: int = 3, steps: int = 3) -> list[dict]:
    """Compile both networks, run the loop; one line per network."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    torch._dynamo.reset()
    counters = {"reference_net": GraphCounter(backend), "backbone": GraphCounter(backend)}
    for name, counter in counters.items():
        getattr(models, name).compile_unet(backend=counter)
    timesteps = torch.tensor([900, 500, 100, 50, 10])[:steps]
    with torch.no_grad():
        for mode, scale_ref, scale_audio in GUIDANCE:
            plan = plan_guidance(mode, scale_ref, scale_audio)
            rows = tuple(plan.reference_rows.tolist())
            reference, backbone = sampling_inputs(models, rows, tuple(plan.audio_rows.tolist()))
            sample = backbone.pop("sample")
            for clip in range(clips):
                motion = reference["motion_latents"] if clip else None  # first clip: zeros
                features = broadcast(models.reference_net(
                    reference["reference_latents"], motion, context=reference["context"]),
                    len(rows))
                for t in timesteps:
                    models.backbone(sample, t, reference=features, **backbone)
    out = []
    for name, counter in counters.items():
        calls = getattr(models, name).__dict__["compiled_calls"]
        entries = [len(_debug_get_cache_entry_list(code)) for code in calls.code_objects()]
        out.append(_line(name, "run", counter.graphs, counter.graphs - sum(entries),
                         sum(e - 1 for e in entries), layouts=len(entries), backend=backend,
                         clips=clips, steps=steps, guidance_layouts=len(GUIDANCE)))
        getattr(models, name).compile_unet(False)
    return out


def lines(backend: str = "eager", clips: int = 3, steps: int = 3):
    models = nonzero_models().eval()
    yield from explain_lines(models)
    yield from run_lines(models, backend, clips, steps)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("eager", "inductor"), default="eager",
                        help="what compiles the captured graphs (graph counts are the same)")
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for line in lines(args.backend, args.clips, args.steps):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
