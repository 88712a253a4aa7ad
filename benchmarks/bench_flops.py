"""FLOPs per generated frame per denoising step of EMO sampling (meta device, no weights).

Builds the EMO models of a preset (default SD1.5 size, :func:`emo_component_configs` + VAE) on
the meta device and counts, with :mod:`benchmarks.flops_common`, what one clip after the first
costs at the CLI defaults (:class:`GenerationSettings`: 12 frames per clip + the checkpoint's 4
motion frames) for every guidance mode:

* per clip, through the EMO family's own hooks (``emo_core/families/emo.py``, what
  ``clip_inputs`` runs): ``reference_features`` (ReferenceNet on the reference + motion latents,
  reference K/V) and ``clip_conditions`` (audio projection, speed encoder, face locator), and the
  VAE decode of the clip's frames
  (``vae.decode``, as ``decode_latents`` calls it; its uint8 copy to numpy cannot run on meta);
* per step: the family's ``predict`` as ``EMOPipeline._denoise`` calls it (the
  step's guidance rows batched, :func:`plan_guidance` rows and masks; a guidance schedule runs
  the full rows on some steps and the conditional row alone on the others, so both are counted
  and averaged over the steps as :func:`step_kinds` schedules them). The step itself is called here,
  not through ``_denoise``: the pipeline moves the row masks to its device, and on meta the
  masks' values (which rows get reference/audio) cannot be read back. The scheduler's
  element-wise update counts no FLOPs.

The speed encoder checks its bucket values (a data-dependent ``item()``), so on meta it runs as a
CPU copy of the same config on the same shapes. Per-clip work is amortised over
``frames_per_clip x steps``; the reference's one VAE encode per video is left out of these
steady-state lines (it vanishes per frame). Prints one JSON object per guidance scheme of
``benchmarks/guidance_schemes.py`` (``default``: true on the CLI defaults' scheme).

Then one whole-video line per ``--video-seconds`` length (default 3, 10, 60; issue 22) at the
defaults: ``gflops_per_kept_frame_step`` = everything the video runs / (kept frames x steps):
the family's audio front-end on that much audio (a random full-size wav2vec2-base, run on CPU with
attention as matmuls: it copies its features to CPU as it goes, so it cannot run on meta), the
reference's VAE encode, and every clip as the clip loop runs it (the family's ``clip_spans``,
``first_motion`` / ``next_motion``, ``clip_inputs``, each step's ``predict``, the VAE decode of the
kept frames), next to the steady-state figure (``vs_steady_state``: relative difference).
``tests/test_bench_flops.py`` checks this loop against a FLOP count of the real
``generate_frames``. MediaPipe face detection and mp4 encoding are not torch and not counted.

    python benchmarks/bench_flops.py [--size 512] [--steps 40] [--video-seconds 3 10 60] [--no-echomimic]

Then the EchoMimic normal and acc rows (``benchmarks/echomimic_flops.py``): total GFLOP per
generated frame over all of each variant's default steps (``"family": "echomimic"``).
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
from benchmarks.guidance_schemes import SCHEMES  # noqa: E402
from emo_core.families import VideoInputs  # noqa: E402
from emo_core.families.emo import EMOClip  # noqa: E402
from emo_core.pipeline.guidance import (  # noqa: E402
    GuidedSteps,
    plan_guidance,
    rows_per_step,
    step_kinds,
)
from emo_core.pipeline.settings import GenerationSettings  # noqa: E402

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
    if device == "meta":  # speed buckets are read on CPU (values: see _SpeedEncoderOnCPU)
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


def measure(pipe, changes: dict, size: int, steps: int, cache: dict | None = None) -> dict:
    """GFLOP per generated frame per step for the CLI defaults with ``changes`` (guidance
    fields), split by module; ``total`` is the sum of the split. The Backbone is counted once
    for the full guidance rows and once for the conditional row alone, and averaged over the
    steps as the schedule (:func:`step_kinds`) runs them."""
    from emo_core.pipeline.clips import clip_spans

    cache = {} if cache is None else cache
    settings = GenerationSettings(size=size, steps=steps, **changes)
    settings = settings.for_model(pipe.models.backbone.config)
    frames, motion = settings.frames_per_clip, settings.motion_frames
    plan = plan_guidance(settings.guidance_mode, settings.guidance_reference,
                         settings.guidance_audio)
    guided = GuidedSteps(plan, step_kinds(steps, settings.guidance_start, settings.guidance_end,
                                          settings.guidance_refresh))
    reference, audio, mask, motion_latents, latents = _clip_inputs(pipe, size, frames, motion)
    span = clip_spans(2 * frames, frames)[1]
    video = VideoInputs(reference, audio, mask, torch.full((2 * frames,), 2.0))
    family, state = pipe.family, {}
    with torch.no_grad():
        reference_net, _ = count(lambda: state.update(
            features=family.reference_features(video, motion_latents)))
        conditions, parts = count(lambda: state.update(
            conditions=family.clip_conditions(video, span)))
        clip = EMOClip(state["features"], *state["conditions"])
        # Count each distinct set of rows once (a step costs what its rows cost); ``cache``
        # carries the counts across schemes (the FLOPs depend on the rows, not the weights).
        for rows in {_rows_key(guided.plan(i)): guided.plan(i) for i in range(steps)}.values():
            if _rows_key(rows) not in cache:
                cache[_rows_key(rows)] = _count_step(pipe, latents, clip, rows, settings)
        backbone = sum(cache[_rows_key(guided.plan(i))] for i in range(steps)) / steps
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
    return {"rows": plan.batch, "rows_per_step": rows_per_step(plan, guided.kinds),
            "frames_per_clip": frames, "motion_frames": motion, "split": split,
            "total": sum(split.values())}


def _rows_key(rows) -> tuple:
    return tuple(rows.reference_rows.tolist()), tuple(rows.audio_rows.tolist())


def _count_step(pipe, latents, clip, rows, settings) -> float:
    """GFLOP of one step's model call over ``rows`` (a :class:`GuidancePlan`), as ``_denoise``
    calls it: the family's ``predict`` (the one-row clip inputs broadcast to ``rows.batch``)."""
    gflop, _ = count(lambda: pipe.family.predict(latents, TIMESTEP, clip, rows, settings))
    return gflop


def _is_default(changes: dict) -> bool:
    defaults = GenerationSettings()
    return all(getattr(defaults, name) == value for name, value in changes.items())


def lines(size: int = 512, steps: int = 40, preset: str = "sd15", device: str = "meta"):
    """One record per guidance scheme of :data:`SCHEMES`; ``default`` marks the CLI defaults."""
    pipe, cache = build_pipeline(preset, device), {}
    for name, changes in SCHEMES.items():
        result = measure(pipe, changes, size, steps, cache)
        yield {"scheme": name, "mode": changes["guidance_mode"],
               "guidance_start": changes["guidance_start"],
               "guidance_end": changes["guidance_end"],
               "guidance_refresh": changes["guidance_refresh"],
               "size": size, "steps": steps, "default": _is_default(changes),
               "rows": result["rows"], "rows_per_step": round(result["rows_per_step"], 4),
               "frames_per_clip": result["frames_per_clip"],
               "motion_frames": result["motion_frames"],
               "gflops_per_frame_step": round(result["total"], 4),
               "split": {name: round(value, 4) for name, value in result["split"].items()}}


# ---------------------------------------------------------------------- whole videos
# Video lengths of the whole-video rows (seconds of audio at the defaults' 25 fps).
VIDEO_SECONDS = (3.0, 10.0, 60.0)
AUDIO_RATE = 16000


def random_wav2vec(preset: str = "sd15"):
    """A random ``Wav2Vec2Model`` of the preset's size (sd15: wav2vec2-base) on CPU: the audio
    front-end cannot run on meta (it copies its features to CPU as it goes)."""
    from transformers import Wav2Vec2Model

    from emo_core.models.presets import wav2vec2_config

    return Wav2Vec2Model(wav2vec2_config(preset)).eval().requires_grad_(False)


def _once_per_video(pipe, wav2vec, seconds: float, settings) -> tuple[dict, object, object]:
    """GFLOP of what a video runs once: the family's audio front-end on ``seconds`` of 16 kHz
    audio (CPU, attention as its matmuls) and the reference's VAE encode. -> (GFLOP by part,
    AudioFeatures, EncodedReference)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from emo_core.pipeline.reference import encode_reference

    waveform = 0.1 * torch.randn(round(seconds * AUDIO_RATE),
                                 generator=torch.Generator().manual_seed(0))
    found: dict = {}
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        audio_front_end, _ = count(lambda: found.update(audio=pipe.family.audio_features(
            wav2vec, waveform, AUDIO_RATE, settings.fps)))
        image = np.zeros((settings.size, settings.size, 3), np.uint8)
        reference_encode, _ = count(lambda: found.update(
            reference=encode_reference(pipe.models, image)))
    return ({"audio_front_end": audio_front_end, "reference_encode": reference_encode},
            found["audio"], found["reference"])


def _clip_parts(pipe, state, span, motion, settings, cache: dict) -> dict:
    """GFLOP of one clip as the pipeline runs it (``clip_inputs``, every step's ``predict`` over
    that step's guidance rows, the VAE decode of the kept frames); counts are cached by what
    they depend on (clip length, first clip or not, rows), values do not matter."""
    family, side = pipe.family, settings.size // 8
    guidance = family.guidance(settings, settings.steps)
    layout = (span.length, motion is None)
    if ("clip", layout) not in cache:
        found: dict = {}
        reference_net, _ = count(lambda: found.update(
            features=family.reference_features(state, motion)))
        conditions, _ = count(lambda: found.update(conditions=family.clip_conditions(state, span)))
        cache["clip", layout] = reference_net, conditions, EMOClip(found["features"],
                                                                   *found["conditions"])
    reference_net, conditions, clip = cache["clip", layout]
    backbone = 0.0
    for step in range(settings.steps):
        rows = guidance.rows(step)
        key = ("step", layout, _rows_key(rows))
        if key not in cache:
            latents = torch.ones(1, span.length, 4, side, side, device=pipe.device)
            cache[key] = _count_step(pipe, latents, clip, rows, settings)
        backbone += cache[key]
    if ("decode", span.keep) not in cache:
        latents = torch.ones(span.keep, 4, side, side, device=pipe.device)
        vae = pipe.models.vae
        cache["decode", span.keep], _ = count(lambda: [
            vae.decode(latents[i:i + settings.decode_batch])
            for i in range(0, span.keep, settings.decode_batch)])
    return {"reference_net": reference_net, "conditions": conditions, "backbone": backbone,
            "vae_decode": cache["decode", span.keep]}


def measure_video(pipe, wav2vec, seconds: float, size: int = 512, steps: int = 40,
                  cache: dict | None = None) -> dict:
    """GFLOP of a whole ``seconds`` video at the CLI defaults, clip by clip as
    ``EMOPipeline.generate_frames`` runs it (the family's ``clip_spans``, ``first_motion``,
    ``clip_inputs``, ``guidance``, ``predict``; the last clip as long as the frames it keeps),
    plus the once-per-video parts. -> ``{"frames", "clips", "last_clip_frames", "parts":
    {part: GFLOP}}``."""
    cache = {} if cache is None else cache
    family = pipe.family
    settings = family.resolve_settings(GenerationSettings(size=size, steps=steps))
    parts, audio, reference = _once_per_video(pipe, wav2vec, seconds, settings)
    speed = torch.full((audio.num_frames,), 2.0)
    video = family.check_inputs(VideoInputs(reference, audio, torch.ones(size, size), speed),
                                settings)
    state = family.start_video(video, settings)
    motion = family.first_motion(state, settings)
    spans = family.clip_spans(audio.num_frames, settings)
    side = size // 8
    with torch.no_grad():
        for span in spans:
            for name, value in _clip_parts(pipe, state, span, motion, settings, cache).items():
                parts[name] = parts.get(name, 0.0) + value
            # The next clip's motion from latents unlike each other (as in a real video).
            latents = torch.arange(1.0, 1.0 + span.length, device=pipe.device).view(
                1, span.length, 1, 1, 1).expand(1, span.length, 4, side, side)
            motion = family.next_motion(state, latents, settings)
    return {"frames": audio.num_frames, "clips": len(spans), "last_clip_frames": spans[-1].length,
            "parts": parts}


def video_lines(size: int = 512, steps: int = 40, preset: str = "sd15", device: str = "meta",
                seconds=VIDEO_SECONDS):
    """One record per video length: GFLOP per kept frame per step of the whole video (every
    clip, the once-per-video parts), next to the steady-state figure of the defaults (a clip
    after the first, :func:`measure`)."""
    pipe, wav2vec, cache = build_pipeline(preset, device), random_wav2vec(preset), {}
    steady = measure(pipe, {}, size, steps)["total"]
    for length in seconds:
        video = measure_video(pipe, wav2vec, length, size, steps, cache)
        per = video["frames"] * steps
        split = {name: value / per for name, value in video["parts"].items()}
        total = sum(split.values())
        yield {"video_seconds": length, "size": size, "steps": steps, "fps": 25.0,
               "frames": video["frames"], "clips": video["clips"],
               "last_clip_frames": video["last_clip_frames"],
               "gflops_per_kept_frame_step": round(total, 4),
               "steady_state_gflops_per_frame_step": round(steady, 4),
               "vs_steady_state": round(total / steady - 1, 5),
               "split": {name: round(value, 4) for name, value in split.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="frame side in px (multiple of 64)")
    parser.add_argument("--steps", type=int, default=40, help="denoising steps per clip")
    parser.add_argument("--video-seconds", type=float, nargs="*", default=list(VIDEO_SECONDS),
                        help="lengths of the whole-video rows (none: steady-state rows only)")
    parser.add_argument("--no-echomimic", action="store_true",
                        help="skip the EchoMimic normal / acc rows (total GFLOP per frame)")
    args = parser.parse_args(argv)
    for record in lines(args.size, args.steps):
        print(json.dumps(record), flush=True)
    if args.video_seconds:
        for record in video_lines(args.size, args.steps, seconds=args.video_seconds):
            print(json.dumps(record), flush=True)
    if not args.no_echomimic:
        from benchmarks.echomimic_flops import lines as echomimic_lines

        for record in echomimic_lines(args.size):
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
