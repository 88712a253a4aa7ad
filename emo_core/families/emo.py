"""The EMO family: the paper's model as this package implements it (the interface's defaults).

Overrides: its site layers (EMO audio attention + temporal module with speed attention), the
per-clip conditions (audio projection of the clip's windows, speed tokens windowed across clip
edges, Face Locator of the clip's union mask), separate reference/audio guidance with a schedule
(``pipeline.guidance``), any scheduler of the registry, and motion-latent chaining (the last
``n`` latents of a clip feed ReferenceNet for the next; no decode round trip).
"""

from __future__ import annotations

import dataclasses

import torch

from .base import ModelFamily, StepGuidance, VideoInputs


@dataclasses.dataclass(frozen=True)
class EMOClip:
    """One clip's inputs, one row each (each step broadcasts them to its guidance rows):
    ``features``: ReferenceFeatures (K/V projected), ``audio_tokens (1, f, K, Da)``,
    ``speed_tokens (1, f, S, Ds)``, ``face_embedding (1, 320, h, w)``."""

    features: object
    audio_tokens: torch.Tensor
    speed_tokens: torch.Tensor | None
    face_embedding: torch.Tensor


class _ScheduledGuidance(StepGuidance):
    """``pipeline.guidance.GuidedSteps`` behind the StepGuidance interface."""

    def __init__(self, guided):
        self.guided = guided

    def rows(self, step: int):
        return self.guided.plan(step)

    def combine(self, step: int, out: torch.Tensor) -> torch.Tensor:
        return self.guided.combine(step, out.float())


class EMOFamily(ModelFamily):
    name = "emo"
    title = "EMO"

    @classmethod
    def install_sites(cls, backbone, by_block: dict) -> int:
        from ..models.backbone import install_emo_sites

        return install_emo_sites(backbone, by_block)

    @classmethod
    def call_extras(cls, backbone, **_unused):
        """Family-specific per-call Backbone inputs (none for EMO)."""
        return None

    # ------------------------------------------------------------------ sampling
    streams_audio = True

    def streamed_audio_features(self, wav2vec, waveform, sample_rate: int, fps: float, *,
                                device=None, cancel=None):
        """wav2vec chunks computed when a clip reads its windows (``audio/streamed.py``): the
        features of a long input are never held whole (issue 22)."""
        from ..audio.features import extract_audio_features

        return extract_audio_features(wav2vec, waveform, sample_rate, fps, device=device,
                                      cancel=cancel, stream=True)

    def start_video(self, inputs: VideoInputs, settings):
        return inputs

    def first_motion(self, state: VideoInputs, settings):
        """Zero motion maps (None) or the reference latent repeated ``n`` times."""
        if settings.motion_frames == 0 or settings.first_clip_motion == "zeros":
            return None
        latents = state.reference.latents.to(*self.placement)
        return latents[:, None].expand(1, settings.motion_frames, *latents.shape[1:])

    def next_motion(self, state, latents: torch.Tensor, settings):
        return latents[:, -settings.motion_frames:] if settings.motion_frames else None

    def clip_inputs(self, state: VideoInputs, span, motion) -> EMOClip:
        return EMOClip(self.reference_features(state, motion), *self.clip_conditions(state, span))

    def reference_features(self, state: VideoInputs, motion):
        """ReferenceNet once per clip on the reference + ``motion (1, n, 4, h, w) | None``, one
        row, with the Backbone's reference K/V projected once (not per step)."""
        features = self.models.reference_net(state.reference.latents.to(*self.placement), motion,
                                             context=self.context(1))
        return self.models.backbone.project_reference(features)

    def clip_conditions(self, state: VideoInputs, span) -> tuple:
        """The clip's condition encodings, one row: ``(audio_tokens, speed_tokens, face)``."""
        models = self.models
        device, dtype = self.placement
        total = state.num_frames
        frames = span.frame_indices(total)
        windows = state.audio.windows[frames].to(device, dtype)[None]  # (1, f, 2m+1, L, C)
        audio_tokens = models.audio_projection(windows)
        # Speed windows must continue across clip edges: encode with a margin of real
        # neighbouring frames on both sides, then drop the margin.
        margin = int(models.speed_encoder.config.window)
        padded = torch.arange(span.start - margin, span.start + span.length + margin)
        padded = padded.clamp(0, total - 1)
        speed_tokens = models.speed_encoder(state.speed[padded].to(device, dtype)[None])
        speed_tokens = speed_tokens[:, margin:margin + span.length]
        mask = state.face_mask
        mask = mask if mask.ndim == 2 else mask[frames].amax(dim=0)
        face = models.face_locator(mask.to(device, dtype)[None, None])
        return audio_tokens, speed_tokens, face

    def make_scheduler(self, settings):
        from ..pipeline.scheduler import make_scheduler

        return make_scheduler(settings.scheduler,
                              settings.prediction_type or self.models.prediction_type)

    def guidance(self, settings, steps: int) -> StepGuidance:
        from ..pipeline.guidance import GuidedSteps, plan_guidance, step_kinds

        plan = plan_guidance(settings.guidance_mode, settings.guidance_reference,
                             settings.guidance_audio)
        return _ScheduledGuidance(GuidedSteps(plan, step_kinds(
            steps, settings.guidance_start, settings.guidance_end, settings.guidance_refresh)))

    def predict(self, sample, timestep, clip: EMOClip, rows, settings) -> torch.Tensor:
        """``rows``: this step's ``GuidancePlan`` (which rows read the reference / the audio)."""
        batch = rows.batch
        features, clip = broadcast_rows(clip, batch)
        return self.models.backbone(
            sample.expand(batch, *sample.shape[1:]), timestep,
            reference=features, reference_rows=rows.reference_rows,
            audio_tokens=clip.audio_tokens, audio_rows=rows.audio_rows,
            speed_tokens=clip.speed_tokens, face_embedding=clip.face_embedding,
            context=self.context(batch))

    def context(self, batch: int):
        context = getattr(self.models, "context", None)
        return None if context is None else context.expand(batch, *context.shape[1:])

    # ------------------------------------------------------------------ training
    def training_forward(self, noisy, timesteps, reference_latents, motion_latents, mask, audio,
                         speed, reference_rows, audio_rows, motion_keep) -> torch.Tensor:
        models = self.models
        batch = noisy.shape[0]
        context = models.context.expand(batch, -1, -1)
        features = models.reference_net(reference_latents, motion_latents, context=context)
        if features.motion is not None and motion_keep is not None:
            keep = motion_keep.to(noisy.dtype).view(-1, 1, 1, 1, 1)
            features = dataclasses.replace(features, motion=[m * keep for m in features.motion])
        audio_tokens = models.audio_projection(audio) if audio is not None else None
        speed_tokens = models.speed_encoder(speed) if speed is not None else None
        return models.backbone(
            noisy, timesteps, reference=features, reference_rows=reference_rows,
            audio_tokens=audio_tokens, audio_rows=audio_rows if audio is not None else None,
            speed_tokens=speed_tokens, face_embedding=models.face_locator(mask), context=context)


def broadcast_rows(clip: EMOClip, batch: int):
    """The one-row clip inputs as ``batch`` guidance rows (views, no copies: the rows differ only
    in what the Backbone's row flags let them read) -> ``(features, clip)``."""
    def rows(tensor):
        return None if tensor is None else tensor.expand(batch, *tensor.shape[1:])

    features = clip.features
    return (dataclasses.replace(
                features, bank={name: rows(t) for name, t in features.bank.items()},
                motion=None if features.motion is None else [rows(m) for m in features.motion],
                kv={name: (rows(k), rows(v)) for name, (k, v) in features.kv.items()}),
            EMOClip(features, rows(clip.audio_tokens), rows(clip.speed_tokens),
                    rows(clip.face_embedding)))
