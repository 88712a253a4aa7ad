"""EMO sampling loop: clip-by-clip generation chained by motion frames, streaming.

Per clip: ReferenceNet runs once (reference latents + the last ``n`` latents of the previous clip),
then the scheduler runs ``steps`` Backbone forwards with all guidance branches batched as rows.
Only the motion latents cross clip boundaries, so memory does not grow with video length.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ..errors import EMOCancelled, EMOInputError
from .clips import ClipSpan, clip_spans
from .guidance import GuidancePlan, GuidedSteps, plan_guidance, step_kinds
from .reference import EncodedReference, decode_latents
from .scheduler import make_scheduler
from .settings import GenerationSettings

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]
# ``preview(x0)`` after each denoising step, before its progress report: ``x0: (f, 4, h, w)``, the
# scheduler's clean estimate of the clip (scaled latents), or the current sample where the
# scheduler gives none (DPM-Solver, UniPC). A host renders it as a live preview.
PreviewFn = Callable[[torch.Tensor], None]


@dataclasses.dataclass(frozen=True)
class ClipConditions:
    """Per-clip inputs, already batched for the guidance rows (``b`` rows, ``f`` frames)."""

    audio_tokens: torch.Tensor  # (b, f, K, Da)
    speed_tokens: torch.Tensor  # (b, f, S, Ds)
    face_embedding: torch.Tensor | None  # (b, 320, h, w)


class EMOPipeline:
    """Runs an :class:`~emo_core.models.emo_models.EMOModels` bundle on one device and dtype."""

    def __init__(self, models, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.models = models.to(device=device, dtype=dtype).eval()
        self.device = torch.device(device)
        self.dtype = dtype

    # ------------------------------------------------------------------ public API
    def generate_frames(self, reference: EncodedReference, audio, face_mask, speed,
                        settings: GenerationSettings, progress: ProgressFn | None = None,
                        cancel: CancelFn | None = None) -> Iterator[np.ndarray]:
        """Yields ``(j, S, S, 3)`` uint8 frames, decoded ``settings.decode_batch`` at a time."""
        for latents in self.generate_latents(reference, audio, face_mask, speed, settings,
                                             progress, cancel):
            yield from self.decode_latents(latents, settings.decode_batch)

    def decode_latents(self, latents: torch.Tensor, batch: int = 8) -> Iterator[np.ndarray]:
        """``latents: (k, 4, h, w)`` -> yields ``(j, 8h, 8w, 3)`` uint8."""
        if self.models.vae is None:
            raise EMOInputError("the EMO checkpoint has no VAE inside; connect a VAE to decode")
        yield from decode_latents(self.models.vae, latents.to(self.device, self.dtype), batch)

    @torch.no_grad()
    def generate_latents(self, reference: EncodedReference, audio, face_mask, speed,
                         settings: GenerationSettings, progress: ProgressFn | None = None,
                         cancel: CancelFn | None = None,
                         preview: PreviewFn | None = None) -> Iterator[torch.Tensor]:
        """Yields ``(k, 4, h, w)`` latents per clip; the ``k`` add up to ``audio.num_frames``.

        ``audio``: AudioFeatures (``windows: (F, 2m+1, L, C)``); ``face_mask``: ``(S, S)`` or
        ``(F, S, S)`` float (union per clip); ``speed``: ``(F,)`` deg/frame or a float.
        Progress counts ``steps + 1`` units per clip: the clip's preparation (ReferenceNet and
        the condition encoders) and each denoising step. ``progress(0, total)`` comes before any
        model runs, and ``cancel`` is asked before every model call that can take long
        (ReferenceNet, each Backbone step), so a host's progress bar shows up at once and an
        interrupt raised from either callback lands within one model call. ``preview`` (see
        ``PreviewFn``) comes once per denoising step, just before that step's progress report.
        """
        settings = settings.validate().for_model(self.models.backbone.config)
        self._set_compile(settings.compile)
        total_frames = int(audio.num_frames)
        speed = self._check_inputs(reference, audio, face_mask, speed, settings, total_frames)
        spans = clip_spans(total_frames, settings.frames_per_clip)
        plan = plan_guidance(settings.guidance_mode, settings.guidance_reference,
                             settings.guidance_audio)
        per_clip = settings.steps + 1
        total = per_clip * len(spans)
        generator = torch.Generator("cpu").manual_seed(settings.seed)
        logger.info("generating %d frames in %d clips of %d (+%d motion frames), %d steps each",
                    total_frames, len(spans), settings.frames_per_clip, settings.motion_frames,
                    settings.steps)
        _report(progress, 0, total)
        motion_latents = self._first_motion(reference, settings)
        for span in spans:
            _check_cancel(cancel, f"cancelled before clip {span.index + 1}")
            features = self._reference_features(reference, motion_latents)
            conditions = self._clip_conditions(span, audio, face_mask, speed, total_frames)
            _report(progress, span.index * per_clip + 1, total)
            latents = self._denoise(span, features, conditions, plan, settings, generator,
                                    progress, cancel, (span.index * per_clip + 1, total),
                                    preview)
            yield latents[0, :span.keep]
            if settings.motion_frames:
                motion_latents = latents[:, -settings.motion_frames:]

    def _set_compile(self, enabled: bool) -> None:
        """``torch.compile`` both networks' UNet calls; compiled graphs stay cached on the
        networks across clips and runs (one per call layout, see ``models/compiled.py``)."""
        for net in (self.models.reference_net, self.models.backbone):
            if bool(net.__dict__.get("compiled_calls")) != enabled:
                net.compile_unet(enabled)

    # ------------------------------------------------------------------ steps
    def _denoise(self, span: ClipSpan, features, conditions: ClipConditions, plan: GuidancePlan,
                 settings: GenerationSettings, generator: torch.Generator,
                 progress: ProgressFn | None, cancel: CancelFn | None, counter: tuple[int, int],
                 preview: PreviewFn | None = None):
        """One clip: ``(1, f, 4, h, w)`` noise -> clean latents, ``steps`` Backbone forwards.

        ``counter``: (progress units done before this clip's first step, total units)."""
        scheduler = make_scheduler(settings.scheduler,
                                   settings.prediction_type or self.models.prediction_type)
        scheduler.set_timesteps(settings.steps, device=self.device)
        side = settings.size // 8
        shape = (1, span.length, self.models.backbone.in_channels, side, side)
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        latents = noise.to(self.device) * scheduler.init_noise_sigma
        guided = GuidedSteps(plan, step_kinds(len(scheduler.timesteps), settings.guidance_start,
                                              settings.guidance_end, settings.guidance_refresh))
        for step, timestep in enumerate(scheduler.timesteps):
            _check_cancel(cancel, f"cancelled at clip {span.index + 1}, step {step + 1}")
            model_input = scheduler.scale_model_input(latents, timestep).to(self.dtype)
            rows = guided.plan(step)  # this step's rows: all of plan's, or its conditional row
            step_features, step_conditions = _broadcast_rows(features, conditions, rows.batch)
            eps = self.models.backbone(
                model_input.expand(rows.batch, *shape[1:]), timestep,
                reference=step_features, reference_rows=rows.reference_rows,
                audio_tokens=step_conditions.audio_tokens, audio_rows=rows.audio_rows,
                speed_tokens=step_conditions.speed_tokens,
                face_embedding=step_conditions.face_embedding,
                context=self._context(rows.batch),
            )
            eps = guided.combine(step, eps.float())
            output = scheduler.step(eps, timestep, latents)
            latents = output.prev_sample
            if preview is not None:
                x0 = getattr(output, "pred_original_sample", None)
                preview((latents if x0 is None else x0)[0])
            _report(progress, counter[0] + step + 1, counter[1])
        return latents.to(self.dtype)

    def _reference_features(self, reference: EncodedReference, motion_latents):
        """ReferenceNet once per clip, one row (each step broadcasts it to its guidance rows)."""
        features = self.models.reference_net(
            reference.latents.to(self.device, self.dtype), motion_latents, context=self._context(1)
        )
        return self.models.backbone.project_reference(features)  # reference K/V once per clip

    def _first_motion(self, reference: EncodedReference, settings: GenerationSettings):
        """First clip: zero motion maps (``None``) or the reference latent repeated ``n`` times."""
        if settings.motion_frames == 0 or settings.first_clip_motion == "zeros":
            return None
        latents = reference.latents.to(self.device, self.dtype)
        return latents[:, None].expand(1, settings.motion_frames, *latents.shape[1:])

    def _clip_conditions(self, span: ClipSpan, audio, face_mask, speed,
                         total_frames: int) -> ClipConditions:
        """The clip's condition encodings, one row (each step broadcasts them to its rows)."""
        models = self.models
        frames = span.frame_indices(total_frames)
        windows = audio.windows[frames].to(self.device, self.dtype)[None]  # (1, f, 2m+1, L, C)
        audio_tokens = models.audio_projection(windows)
        # Speed windows must continue across clip edges: encode with a margin of real
        # neighbouring frames on both sides, then drop the margin.
        margin = int(models.speed_encoder.config.window)
        padded = torch.arange(span.start - margin, span.start + span.length + margin)
        padded = padded.clamp(0, total_frames - 1)
        speed_tokens = models.speed_encoder(speed[padded].to(self.device, self.dtype)[None])
        speed_tokens = speed_tokens[:, margin:margin + span.length]
        mask = face_mask if face_mask.ndim == 2 else face_mask[frames].amax(dim=0)
        face_embedding = models.face_locator(mask.to(self.device, self.dtype)[None, None])
        return ClipConditions(audio_tokens=audio_tokens, speed_tokens=speed_tokens,
                              face_embedding=face_embedding)

    def _context(self, batch: int):
        context = getattr(self.models, "context", None)
        if context is None:
            return None
        return context.expand(batch, *context.shape[1:])

    # ------------------------------------------------------------------ validation
    def _check_inputs(self, reference, audio, face_mask, speed, settings, total_frames):
        if total_frames < 1:
            raise EMOInputError("audio gives 0 video frames; use a longer clip or a higher fps")
        if reference.size != settings.size:
            raise EMOInputError(
                f"reference image is {reference.size}px but settings.size is {settings.size}; "
                "encode the reference at the generation size"
            )
        if abs(float(audio.fps) - float(settings.fps)) > 1e-6:
            raise EMOInputError(
                f"audio features were computed at {audio.fps} fps but the run uses {settings.fps} "
                "fps; recompute the features at the video fps"
            )
        expected = (settings.size, settings.size)
        if tuple(face_mask.shape[-2:]) != expected or face_mask.ndim not in (2, 3):
            raise EMOInputError(
                f"face mask must be (H, W) or (frames, H, W) with H = W = {settings.size}, "
                f"got {tuple(face_mask.shape)}"
            )
        if face_mask.ndim == 3 and face_mask.shape[0] != total_frames:
            raise EMOInputError(
                f"per-frame face mask has {face_mask.shape[0]} frames, expected {total_frames}"
            )
        speed = torch.as_tensor(speed, dtype=torch.float32)
        if speed.ndim == 0:
            speed = speed.expand(total_frames)
        if speed.shape != (total_frames,) or not torch.isfinite(speed).all():
            raise EMOInputError(
                f"speed must be a number or {total_frames} finite values (deg/frame), "
                f"got shape {tuple(speed.shape)}"
            )
        return speed


def _broadcast_rows(features, conditions: ClipConditions, batch: int):
    """The one-row per-clip inputs as ``batch`` guidance rows (views, no copies: the rows differ
    only in what the Backbone's row flags let them read)."""
    def rows(tensor):
        return None if tensor is None else tensor.expand(batch, *tensor.shape[1:])

    return (dataclasses.replace(
                features, bank={name: rows(t) for name, t in features.bank.items()},
                motion=None if features.motion is None else [rows(m) for m in features.motion],
                kv={name: (rows(k), rows(v)) for name, (k, v) in features.kv.items()}),
            ClipConditions(audio_tokens=rows(conditions.audio_tokens),
                           speed_tokens=rows(conditions.speed_tokens),
                           face_embedding=rows(conditions.face_embedding)))


def _report(progress: ProgressFn | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def _check_cancel(cancel: CancelFn | None, message: str) -> None:
    if cancel is not None and cancel():
        raise EMOCancelled(message)
