"""FLOPs per generated frame per denoising step of EMO sampling (meta device, no weights).

Builds the EMO models of a preset (default SD1.5 size, :func:`emo_component_configs` + VAE) on
the meta device and counts, with :mod:`benchmarks.flops_common`, what one clip after the first
costs at the CLI defaults (:class:`GenerationSettings`: 12 frames per clip + the checkpoint's 4
motion frames) for every guidance mode:

* per clip, through the pipeline's own methods: ``EMOPipeline._reference_features``
  (ReferenceNet on the reference + motion latents) and ``EMOPipeline._clip_conditions``
  (audio projection, speed encoder, face locator), and the VAE decode of the clip's frames
  (``vae.decode``, as ``decode_latents`` calls it; its uint8 copy to numpy cannot run on meta);
* per step: the Backbone forward with the arguments ``EMOPipeline._denoise`` passes (all
  guidance rows batched, :func:`plan_guidance` rows and masks). The step itself is called here,
  not through ``_denoise``: the pipeline moves the row masks to its device, and on meta the
  masks' values (which rows get reference/audio) cannot be read back. The scheduler's
  element-wise update counts no FLOPs.

The speed encoder checks its bucket values (a data-dependent ``item()``), so on meta it runs as a
CPU copy of the same config on the same shapes. Per-clip work is amortised over
``frames_per_clip x steps``; the reference's one VAE encode per video is left out (it vanishes
per frame). Prints one JSON object per guidance mode:

    python benchmarks/bench_flops.py [--size 512] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.flops_common import count, module_gflop  # noqa: E402
from emo_core.pipeline.guidance import plan_guidance  # noqa: E402
from emo_core.pipeline.settings import GUIDANCE_MODES, GenerationSettings  # noqa: E402

TIMESTEP = 500  # any timestep: FLOPs do not depend on it


class _SpeedEncoderOnCPU(torch.nn.Module):
    """The speed encoder of ``source``'s config run on CPU (its bucket check reads values)."""

    def __init__(self, source):
        super().__init__()
        self.config = source.config
        self.inner = type(source).from_config(source.config)

    def forward(self, speed: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.full(speed.shape, 2.0)).to(speed.device)


def build_pipeline(preset: str = "sd15", device: str = "meta"):
    """:class:`EMOPipeline` over random (or meta, shapes-only) models of ``preset`` with a VAE."""
    from emo_core.models.emo_models import EMOModels
    from emo_core.models.presets import emo_component_configs, vae_config
    from emo_core.pipeline.pipeline import EMOPipeline

    configs = emo_component_configs(preset)
    configs["vae"] = vae_config(preset)
    with torch.device(device):
        models = EMOModels.from_configs(configs).requires_grad_(False)
    pipe = EMOPipeline(models, device)
    if device == "meta":  # after EMOPipeline moved everything to meta
        models.speed_encoder = _SpeedEncoderOnCPU(models.speed_encoder)
    return pipe


def _clip_inputs(pipe, size: int, frames: int, motion: int):
    """Reference, audio, mask, motion and clip latents of a later clip (values: shapes only)."""
    from emo_core.audio.features import AudioFeatures
    from emo_core.pipeline.reference import EncodedReference

    cfg, side = pipe.models.audio_projection.config, size // 8
    with torch.device(pipe.device):
        windows = torch.ones(2 * frames, cfg.seq_len, cfg.blocks, cfg.channels)
        reference = EncodedReference(torch.ones(1, 4, side, side),
                                     np.zeros((size, size, 3), np.uint8))
        mask = torch.ones(size, size)
        # Motion latents unlike the reference and each other, so that a real run computes
        # every ReferenceNet row (as in a later clip of a real video).
        motion_latents = None if not motion else torch.arange(2.0, 2.0 + motion).view(
            1, motion, 1, 1, 1).expand(1, motion, 4, side, side)
        latents = torch.ones(1, frames, 4, side, side)
    audio = AudioFeatures(windows, 2 * frames, 25.0, torch.zeros(1))
    return reference, audio, mask, motion_latents, latents


def measure(pipe, mode: str, size: int, steps: int) -> dict:
    """GFLOP per generated frame per step for guidance ``mode`` (CLI defaults otherwise),
    split by module; ``total`` is the sum of the split."""
    from emo_core.pipeline.clips import clip_spans

    settings = GenerationSettings(size=size, steps=steps, guidance_mode=mode)
    settings = settings.for_model(pipe.models.backbone.config)
    frames, motion = settings.frames_per_clip, settings.motion_frames
    plan = plan_guidance(mode, settings.guidance_reference, settings.guidance_audio)
    reference, audio, mask, motion_latents, latents = _clip_inputs(pipe, size, frames, motion)
    span = clip_spans(2 * frames, frames)[1]
    state = {}
    with torch.no_grad():
        reference_net, _ = count(lambda: state.update(
            features=pipe._reference_features(reference, motion_latents, plan.batch)))
        conditions, parts = count(lambda: state.update(conditions=pipe._clip_conditions(
            span, audio, mask, torch.full((2 * frames,), 2.0), plan, 2 * frames)))
        cond = state["conditions"]
        backbone, _ = count(lambda: pipe.models.backbone(
            latents.expand(plan.batch, *latents.shape[1:]), TIMESTEP,
            reference=state["features"], reference_rows=plan.reference_rows,
            audio_tokens=cond.audio_tokens, audio_rows=plan.audio_rows,
            speed_tokens=cond.speed_tokens, face_embedding=cond.face_embedding,
            context=pipe._context(plan.batch)))
        vae = pipe.models.vae
        vae_decode, _ = count(lambda: [vae.decode(latents[0, i:i + settings.decode_batch])
                                       for i in range(0, frames, settings.decode_batch)])
    audio_projection = module_gflop(parts, "AudioProjection")
    face_locator = module_gflop(parts, "FaceLocator")
    per_clip = {"reference_net": reference_net, "audio_projection": audio_projection,
                "face_locator": face_locator,
                "speed_encoder": conditions - audio_projection - face_locator,
                "vae_decode": vae_decode}
    split = {"backbone": backbone / frames,
             **{name: value / (frames * steps) for name, value in per_clip.items()}}
    return {"rows": plan.batch, "frames_per_clip": frames, "motion_frames": motion,
            "split": split, "total": sum(split.values())}


def lines(size: int = 512, steps: int = 40, preset: str = "sd15", device: str = "meta"):
    """One record per guidance mode; ``default`` marks the CLI defaults' mode."""
    pipe = build_pipeline(preset, device)
    default = GenerationSettings().guidance_mode
    for mode in GUIDANCE_MODES:
        result = measure(pipe, mode, size, steps)
        yield {"mode": mode, "size": size, "steps": steps, "default": mode == default,
               "rows": result["rows"], "frames_per_clip": result["frames_per_clip"],
               "motion_frames": result["motion_frames"],
               "gflops_per_frame_step": round(result["total"], 4),
               "split": {name: round(value, 4) for name, value in result["split"].items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="frame side in px (multiple of 64)")
    parser.add_argument("--steps", type=int, default=40, help="denoising steps per clip")
    args = parser.parse_args(argv)
    for record in lines(args.size, args.steps):
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
