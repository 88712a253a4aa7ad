"""Peak memory of one stage-2 training step with and without diffusers' gradient checkpointing.

``EMOTrainingModule(gradient_checkpointing=True)`` turns on ``enable_gradient_checkpointing()``
in the ReferenceNet and the Backbone: every resnet, transformer block and EMO site (audio +
motion modules) is recomputed in backward instead of keeping its activations. Two figures, both
from the allocation events of ``torch.profiler`` (deterministic: they count tensor allocations,
not the process RSS), above the bytes live before the step:

* ``activations_mib``: live tensor bytes when the forward returns = what backward holds on to;
* ``peak_mib``: the peak of live bytes during forward + backward (parameter gradients included).

Prints one JSON object per line and a last line with the ratios.

    python benchmarks/bench_grad_checkpointing.py [--latent 16] [--frames 8] [--motion 4]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.core_inputs import loss_weights, nonzero_models, stage2_inputs  # noqa: E402
from emo_core.training.step import EMOTrainingModule  # noqa: E402


def forward(models, inputs: dict, checkpointing: bool) -> torch.Tensor:
    """The stage-2 training forward -> scalar loss (graph kept for backward)."""
    module = EMOTrainingModule(models, stage=2, gradient_checkpointing=checkpointing).train()
    prediction = module(**inputs)
    return (prediction * loss_weights(prediction.shape)).sum()


def step(models, inputs: dict, checkpointing: bool) -> tuple[float, dict[str, torch.Tensor]]:
    """One stage-2 forward + backward -> (loss, {parameter name: gradient})."""
    models.zero_grad(set_to_none=True)
    loss = forward(models, inputs, checkpointing)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in models.named_parameters() if p.grad is not None}
    models.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def memory(fn) -> tuple[int, int, object]:
    """``(peak, live at the end, fn's result)``: CPU tensor bytes allocated while ``fn()`` runs,
    above the start (the result is returned, so what it holds stays live)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events = sorted((e.start_ns(), i, e.nbytes()) for i, e in
                    enumerate(prof.profiler.kineto_results.events()) if e.name() == "[memory]")
    live = peak = 0
    for _, _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak, live, result


def measure(models, inputs: dict, checkpointing: bool, peak: bool = True) -> tuple[int, int]:
    """``(activation bytes after the forward, peak bytes of forward + backward or 0)``."""
    models.zero_grad(set_to_none=True)
    _, held, loss = memory(lambda: forward(models, inputs, checkpointing))
    del loss
    top = memory(lambda: step(models, inputs, checkpointing))[0] if peak else 0
    return held, top


def lines(latent: int = 16, frames: int = 8, motion: int = 4, batch: int = 2):
    models = nonzero_models()
    inputs = stage2_inputs(models, batch=batch, frames=frames, motion=motion, latent=latent)
    found = {}
    for checkpointing in (False, True):
        held, peak = found[checkpointing] = measure(models, inputs, checkpointing)
        yield {"gradient_checkpointing": checkpointing, "preset": "tiny", "latent": latent,
               "frames": frames, "motion_frames": motion, "batch": batch,
               "activations_mib": round(held / 2**20, 2), "peak_mib": round(peak / 2**20, 2)}
    yield {"activations_ratio": round(found[True][0] / found[False][0], 3),
           "peak_ratio": round(found[True][1] / found[False][1], 3)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent", type=int, default=16, help="latent side (pixels / 8)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--motion", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for line in lines(args.latent, args.frames, args.motion, args.batch):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
