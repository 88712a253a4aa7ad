"""The one sampling loop: clip-by-clip generation chained by the family's motion, streaming.

Per clip the model family (``emo_core/families``, asked once, when the pipeline is made) builds
the clip's inputs (ReferenceNet once on the reference + the previous clip's motion, the condition
encoders once), then the scheduler runs ``steps`` model calls whose guidance rows the family
batches and mixes; the family chains the clip into the next one (EMO: the last ``n`` latents;
Hallo: decoded and re-encoded frames). Only that motion crosses clip boundaries, so memory does
not grow with video length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ..errors import EMOCancelled, EMOInputError
from ..families import VideoInputs, family_of
from .clips import ClipSpan
from .settings import GenerationSettings

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]
# ``preview(x0)`` after each denoising step, before its progress report: ``x0: (f, 4, h, w)``, the
# scheduler's clean estimate of the clip (scaled latents), or the current sample where the
# scheduler gives none (DPM-Solver, UniPC). A host renders it as a live preview.
PreviewFn = Callable[[torch.Tensor], None]
# ``on_step(clip index, step, latents (1, f, 4, h, w))`` after each scheduler step.
StepFn = Callable[[int, int, torch.Tensor], None]


class EMOPipeline:
    """Runs an :class:`~emo_core.models.emo_models.EMOModels` bundle where it already is.

    The caller places the models (``load_emo_checkpoint(device=, dtype=)``, or ComfyUI's
    patchers in the nodes); the pipeline never moves them. ``device``/``dtype`` default to the
    Backbone's. ``family``: the bundle's model family (default: the one its config names)."""

    def __init__(self, models, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, family=None):
        parameter = next(models.backbone.parameters())
        self.models = models
        self.device = torch.device(device) if device is not None else parameter.device
        self.dtype = dtype or parameter.dtype
        self.family = family or family_of(models)

    # ------------------------------------------------------------------ public API
    def generate_frames(self, reference, audio, face_mask, speed, settings: GenerationSettings,
                        progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                        conditions=None) -> Iterator[np.ndarray]:
        """Yields ``(j, S, S, 3)`` uint8 frames, decoded ``settings.decode_batch`` at a time."""
        for latents in self.generate_latents(reference, audio, face_mask, speed, settings,
                                             progress, cancel, conditions=conditions):
            yield from self.decode_latents(latents, settings.decode_batch)

    def decode_latents(self, latents: torch.Tensor, batch: int = 8) -> Iterator[np.ndarray]:
        """``latents: (k, 4, h, w)`` model space -> yields ``(j, 8h, 8w, 3)`` uint8."""
        from .decode import decode_latents

        if self.models.vae is None:
            raise EMOInputError("the EMO checkpoint has no VAE inside; connect a VAE to decode")
        yield from decode_latents(self.models.vae, latents.to(self.device, self.dtype), batch,
                                  self.family.latent_format)

    @torch.no_grad()
    def generate_latents(self, reference, audio, face_mask, speed, settings: GenerationSettings,
                         progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                         preview: PreviewFn | None = None, conditions=None,
                         on_step: StepFn | None = None) -> Iterator[torch.Tensor]:
        """Yields ``(k, 4, h, w)`` latents per clip; the ``k`` add up to ``audio.num_frames``.

        ``reference``: EncodedReference; ``audio``: AudioFeatures of the family's front-end
        (``windows: (F', 2m+1, L, C)``); ``face_mask``: ``(S, S)`` or ``(F, S, S)`` float (union
        per clip; None for families that build their own); ``speed``: ``(F,)`` deg/frame or a
        float (None or unused without speed layers); ``conditions``: the family's
        ``reference_conditions`` (Hallo: face embedding + region masks).
        Progress counts ``steps + family.prepare_progress_units`` units per clip: the clip's
        preparation (ReferenceNet and the condition encoders) and each denoising step.
        ``progress(0, total)`` comes before any model runs, and ``cancel`` is asked before every
        model call that can take long (ReferenceNet, each Backbone step), so a host's progress
        bar shows up at once and an interrupt raised from either callback lands within one
        model call. ``preview`` (see ``PreviewFn``) comes once per denoising step, just before
        that step's progress report.
        """
        family = self.family
        settings = family.resolve_settings(settings.validate())
        self._set_compile(settings.compile)
        # One generator per run: the noise, and whatever a family's hooks draw (Hallo2's motion
        # masks), in the order the loop asks for them.
        generator = torch.Generator("cpu").manual_seed(settings.seed)
        inputs = self._check_inputs(VideoInputs(reference, audio, face_mask, speed, conditions,
                                                generator), settings)
        spans = family.clip_spans(inputs.num_frames, settings)
        per_clip = settings.steps + family.prepare_progress_units
        total = per_clip * len(spans)
        logger.info("%s: generating %d frames in %d clips of %d (+%d motion frames), %d steps each",
                    family.title, inputs.num_frames, len(spans), settings.frames_per_clip,
                    settings.motion_frames, settings.steps)
        _report(progress, 0, total)
        state = family.start_video(inputs, settings)
        motion = family.first_motion(state, settings)
        for span in spans:
            _check_cancel(cancel, f"cancelled before clip {span.index + 1}")
            clip = family.clip_inputs(state, span, motion)
            done = span.index * per_clip + family.prepare_progress_units
            if family.prepare_progress_units:
                _report(progress, done, total)
            latents = self._denoise(span, clip, settings, generator, progress, cancel,
                                    (done, total), preview, on_step)
            yield latents[0, :span.keep]
            if span.index + 1 < len(spans):  # after the last clip, nothing is chained
                motion = family.next_motion(state, latents, settings)

    def _set_compile(self, enabled: bool) -> None:
        """``torch.compile`` both networks' UNet calls; compiled graphs stay cached on the
        networks across clips and runs (one per call layout, see ``models/compiled.py``)."""
        for net in (self.models.reference_net, self.models.backbone):
            if bool(net.__dict__.get("compiled_calls")) != enabled:
                net.compile_unet(enabled)

    # ------------------------------------------------------------------ steps
    def _denoise(self, span: ClipSpan, clip, settings: GenerationSettings,
                 generator: torch.Generator, progress: ProgressFn | None,
                 cancel: CancelFn | None, counter: tuple[int, int],
                 preview: PreviewFn | None = None, on_step: StepFn | None = None):
        """One clip: ``(1, f, 4, h, w)`` noise -> clean latents, ``steps`` model calls.

        ``counter``: (progress units done before this clip's first step, total units)."""
        family = self.family
        scheduler = family.make_scheduler(settings)
        scheduler.set_timesteps(settings.steps, device=self.device)
        side = settings.size // 8
        shape = (1, span.length, self.models.backbone.in_channels, side, side)
        noise = family.initial_noise(generator, shape)
        latents = noise.to(self.device) * scheduler.init_noise_sigma
        guidance = family.guidance(settings, len(scheduler.timesteps))
        for step, timestep in enumerate(scheduler.timesteps):
            _check_cancel(cancel, f"cancelled at clip {span.index + 1}, step {step + 1}")
            model_input = scheduler.scale_model_input(latents, timestep).to(self.dtype)
            out = family.predict(model_input, timestep, clip, guidance.rows(step), settings)
            output = scheduler.step(guidance.combine(step, out), timestep, latents)
            latents = output.prev_sample
            if on_step is not None:
                on_step(span.index, step, latents)
            if preview is not None:
                x0 = getattr(output, "pred_original_sample", None)
                preview((latents if x0 is None else x0)[0])
            _report(progress, counter[0] + step + 1, counter[1])
        return latents.to(self.dtype)

    # ------------------------------------------------------------------ validation
    def _check_inputs(self, inputs: VideoInputs, settings) -> VideoInputs:
        if inputs.num_frames < 1:
            raise EMOInputError("audio gives 0 video frames; use a longer clip or a higher fps")
        if inputs.reference.size != settings.size:
            raise EMOInputError(
                f"reference image is {inputs.reference.size}px but settings.size is "
                f"{settings.size}; encode the reference at the generation size")
        if abs(float(inputs.audio.fps) - float(settings.fps)) > 1e-6:
            raise EMOInputError(
                f"audio features were computed at {inputs.audio.fps} fps but the run uses "
                f"{settings.fps} fps; recompute the features at the video fps")
        front_end = getattr(inputs.audio, "front_end", "emo")
        if front_end != self.family.audio_front_end:
            raise EMOInputError(
                f"emo_audio: these audio features come from the {front_end!r} audio front-end "
                f"but the models are a {self.family.title} checkpoint (front-end "
                f"{self.family.audio_front_end!r}); compute them with the same models")
        return self.family.check_inputs(inputs, settings)


def _report(progress: ProgressFn | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def _check_cancel(cancel: CancelFn | None, message: str) -> None:
    if cancel is not None and cancel():
        raise EMOCancelled(message)
