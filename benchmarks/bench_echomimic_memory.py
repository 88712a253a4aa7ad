"""EchoMimic memory in video length (issue 21): one context window of activations at a time.

EchoMimic denoises the WHOLE video as one span (``families/echomimic.py``): each step's model
output is the average of 12-frame windows (``echomimic_parts.sliding_predict``). What may grow
with the video is only the latents themselves (``(1, F, 4, h, w)`` plus the step's sum and
count buffers) and whisper's rows (50 per second); every denoiser call must see one window.

For each video length this runs one denoising step of the family's own hooks
(``start_video`` + ``predict``, the calls the clip loop makes) on the meta device (no weights,
no data: the counts are exact and deterministic) and records, with forward hooks:

* ``denoiser_calls`` and ``max_frames_per_call``: the Backbone calls of the step and the most
  frames one call saw (must be ``context_frames``, whatever the length);
* ``peak_module_output_elements``: the largest output of any Backbone sub-module in any call
  (the biggest single activation);
* ``activation_elements_per_call``: the sum of every sub-module output of one Backbone call,
  the most over calls (an upper bound of what one call holds at once);
* ``latent_elements``: the video's latents (what grows, by design).

    python benchmarks/bench_echomimic_memory.py [--preset sd15] [--size 512] [--frames 24 96 384]

Prints one JSON line per length; ``tests/test_echomimic_memory.py`` asserts the per-call
figures are equal across lengths at tiny size.
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.echomimic_flops import WHISPER_TINY, build_models

TIMESTEP = 500


class _ActivationMeter:
    """Forward hooks on the Backbone (per call) and every sub-module (per output)."""

    def __init__(self, backbone: torch.nn.Module):
        self.calls: list[dict] = []
        self.handles = [backbone.register_forward_pre_hook(self._start, with_kwargs=True),
                        backbone.register_forward_hook(self._stop)]
        self.handles += [module.register_forward_hook(self._output)
                         for name, module in backbone.named_modules() if name]
        self._current: dict | None = None

    def _start(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self._current = {"frames": int(sample.shape[1]), "peak": 0, "sum": 0}

    def _stop(self, module, args, output):
        self.calls.append(self._current)
        self._current = None

    def _output(self, module, args, output):
        if self._current is None:
            return
        tensors = output if isinstance(output, (tuple, list)) else (output,)
        sizes = [t.numel() for t in tensors if isinstance(t, torch.Tensor)]
        if sizes:
            self._current["peak"] = max(self._current["peak"], max(sizes))
            self._current["sum"] += sum(sizes)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def profile_step(models, frames: int, size: int = 512, guidance_scale: float | None = None
                 ) -> dict:
    """One denoising step of a ``frames``-frame video through the EchoMimic family's hooks."""
    from emo_core.audio.whisper_features import WhisperFeatures
    from emo_core.families import VideoInputs, family_of
    from emo_core.pipeline.reference import EncodedReference
    from emo_core.pipeline.settings import GenerationSettings

    family = family_of(models)
    device = next(models.backbone.parameters()).device
    side = size // 8
    scale = family.sampling_defaults()["guidance_reference"] if guidance_scale is None \
        else guidance_scale
    settings = family.resolve_settings(GenerationSettings(size=size, guidance_reference=scale))
    seconds = frames / settings.fps
    audio = WhisperFeatures(rows=torch.zeros(int(seconds * 50) + 1,
                                             WHISPER_TINY["encoder_layers"] + 1, 384),
                            num_frames=frames, fps=settings.fps, waveform_16k=torch.zeros(1))
    reference = EncodedReference(latents=torch.zeros(1, 4, side, side, device=device),
                                 image=None)
    inputs = VideoInputs(reference=reference, audio=audio, face_mask=torch.ones(size, size),
                         speed=None)
    latents = torch.zeros(1, frames, 4, side, side, device=device)
    meter = _ActivationMeter(models.backbone)
    try:
        with torch.no_grad():
            state = family.start_video(inputs, settings)
            guidance = family.guidance(settings, settings.steps)
            out = family.predict(latents, TIMESTEP, state, guidance.rows(0), settings)
    finally:
        meter.close()
    assert out.shape[1:] == latents.shape[1:]
    calls = meter.calls
    return {"family": "echomimic", "frames": frames, "size": size,
            "cfg_rows": int(out.shape[0]), "denoiser_calls": len(calls),
            "max_frames_per_call": max(c["frames"] for c in calls),
            "peak_module_output_elements": max(c["peak"] for c in calls),
            "activation_elements_per_call": max(c["sum"] for c in calls),
            "latent_elements": latents.numel()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sd15", choices=("sd15", "tiny"))
    parser.add_argument("--variant", default="normal", choices=("normal", "acc"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, nargs="+", default=[24, 96, 384])
    args = parser.parse_args(argv)
    models = build_models(args.variant, args.preset, "meta")
    for frames in args.frames:
        line = profile_step(models, frames, args.size)
        print(json.dumps({"variant": args.variant, "preset": args.preset, **line}))


if __name__ == "__main__":
    main()
