"""The EchoMimic v1 family: a ``convert-echomimic`` checkpoint run as EchoMimic's inference runs it.

Overrides (numbers equal EchoMimic's own, ``tests/test_echomimic_*.py``): motion modules at all
21 sites and no audio modules (the audio is ``attn2``'s context, scaled by 3:
``models/echomimic.py``); the whisper front-end (``audio/whisper_features.py``); the whole
video is ONE span denoised with sliding 12-frame windows (overlap 3, shifted by 2 frames per
step, averaged; ``echomimic_parts.py``), one window's activations at a time; ReferenceNet once
per video with fp16-rounded banks; CFG rows ``[uncond, cond]`` (uncond: no reference, zero audio
and face) mixed after the window average, or no CFG at scale <= 1 (the acc variant); clamped
initial noise; its DDIM (v-prediction, zero terminal SNR, trailing). Steps and CFG scale default
to the checkpoint's variant (normal 30 / 2.5, acc 6 / 1.0) when left at the EMO defaults.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..errors import EMOInputError
from .base import JointCFG, ModelFamily, StepGuidance, VideoInputs

logger = logging.getLogger(__name__)

INIT_NOISE_CLAMP = 1.5
# EchoMimic's facemask_dilation_ratio: its face-box mask grows the box by 0.1 of its size on
# every side (this pack's mask_expand means the same); used when the user kept the EMO default.
FACE_MASK_EXPAND = 0.1


@dataclass
class _EchoVideo:
    """Per-video state: audio (``WhisperFeatures``), reference bank rows, face map."""

    inputs: VideoInputs
    reference: object
    face: torch.Tensor
    guidance: bool


class _EchoGuidance(JointCFG):
    """``rows(step)`` -> (step index, CFG on); ``combine`` after the window average (EchoMimic's
    order), or the single cond row when CFG is off."""

    def __init__(self, scale: float):
        super().__init__(scale)
        self.enabled = scale > 1.0  # EchoMimic: do_classifier_free_guidance = scale > 1

    def rows(self, step: int):
        return step, self.enabled

    def combine(self, step: int, out: torch.Tensor) -> torch.Tensor:
        return super().combine(step, out) if self.enabled else out


class EchoMimicFamily(ModelFamily):
    name = "echomimic"
    title = "EchoMimic"
    audio_front_end = "whisper"
    audio_model = None  # whisper is inside the checkpoint
    prepare_progress_units = 0
    fixed_settings = {
        "guidance_mode": "one joint CFG scale (guidance_reference sets it)",
        "guidance_audio": "one joint CFG scale (guidance_reference sets it)",
        "guidance_start": "CFG at every step",
        "guidance_end": "CFG at every step",
        "guidance_refresh": "CFG at every step",
        "frames_per_clip": "sliding 12-frame windows over the whole video",
        "motion_frames": "no motion frames (windows overlap instead)",
        "first_clip_motion": "no motion frames",
        "scheduler": "its own DDIM (v-prediction, zero terminal SNR, trailing)",
        "prediction_type": "v-prediction",
        "preset": "its own sampling; the presets are measured on EMO weights",
    }

    # ------------------------------------------------------------------ model construction
    @classmethod
    def models_class(cls):
        """The checkpoint's container (``io.emo_checkpoint`` builds it): ``EchoMimicModels``."""
        from ..models.echomimic_models import EchoMimicModels

        return EchoMimicModels

    @classmethod
    def install_sites(cls, backbone, by_block: dict) -> int:
        from ..models.echomimic import install_motion_sites

        return install_motion_sites(backbone, by_block)

    # ------------------------------------------------------------------ settings
    @property
    def sampling(self) -> dict:
        """The checkpoint's sampling config, checked: a hand-edited or damaged one is refused
        here (``EMOInputError`` naming the field), before any model loads or runs."""
        cfg = super().sampling
        where = "EchoMimic checkpoint: emo_config sampling"
        values = {name: cfg.get(name, default) for name, default in (
            ("steps", 30), ("context_frames", 12), ("context_overlap", 3))}
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
                raise EMOInputError(f"{where}.{name}={value!r} is not a whole number in "
                                    "0..1000; re-create the checkpoint with convert-echomimic")
        if values["steps"] < 1 or not 0 <= values["context_overlap"] < values["context_frames"]:
            raise EMOInputError(f"{where}: steps={values['steps']}, context_frames="
                                f"{values['context_frames']}, context_overlap="
                                f"{values['context_overlap']} (need steps >= 1 and 0 <= overlap "
                                "< frames); re-create the checkpoint with convert-echomimic")
        scale = cfg.get("guidance_scale", 2.5)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) \
                or not 0.0 <= scale <= 100.0:
            raise EMOInputError(f"{where}.guidance_scale={scale!r} is not a number in 0..100; "
                                "re-create the checkpoint with convert-echomimic")
        if not isinstance(cfg.get("scheduler") or {}, dict):
            raise EMOInputError(f"{where}.scheduler must be a scheduler config (a mapping), "
                                "re-create the checkpoint with convert-echomimic")
        return cfg

    def sampling_defaults(self) -> dict:
        cfg = self.sampling
        return {"steps": int(cfg.get("steps", 30)),
                "guidance_reference": float(cfg.get("guidance_scale", 2.5)),
                "frames_per_clip": int(cfg.get("context_frames", 12)), "motion_frames": 0,
                "guidance_audio": None, "prediction_type": "v_prediction"}

    def resolve_settings(self, settings):
        """The checkpoint's steps and CFG scale where the user kept the EMO defaults."""
        from ..pipeline.settings import GenerationSettings

        default, own = GenerationSettings(), self.sampling_defaults()
        steps = own["steps"] if settings.steps == default.steps else settings.steps
        scale = own["guidance_reference"] if settings.guidance_reference == \
            default.guidance_reference else settings.guidance_reference
        return settings.replace(steps=steps, guidance_reference=scale,
                                frames_per_clip=own["frames_per_clip"], motion_frames=0,
                                guidance_mode="joint").validate()

    def uses_speed(self) -> bool:
        return False

    def ignored_options(self, *, speed_given: bool, paste_back: bool, settings) -> list[str]:
        ignored = ["the speed input (EchoMimic weights have no speed layers)"] if speed_given \
            else []
        return ignored + self.ignored_settings(settings)

    def log_defaults(self, checkpoint: str) -> None:
        cfg = self.sampling
        logger.info("%s is an EchoMimic (%s) checkpoint: %s steps, CFG %s, windows of %s "
                    "frames overlapping %s, whisper audio", checkpoint, cfg.get("variant"),
                    cfg.get("steps"), cfg.get("guidance_scale"), cfg.get("context_frames"),
                    cfg.get("context_overlap"))

    # ------------------------------------------------------------------ inputs
    def prepare_portrait(self, request, settings):
        """EMO's face crop and face-box mask, the box grown by EchoMimic's 0.1 (not EMO's 0.25)
        when ``mask_expand`` was left at its default."""
        import dataclasses

        from ..face.mask_expand import DEFAULT_MASK_EXPAND

        if request.mask_expand == DEFAULT_MASK_EXPAND:
            request = dataclasses.replace(request, mask_expand=FACE_MASK_EXPAND)
        return super().prepare_portrait(request, settings)

    def audio_encoder(self, wav2vec):
        """The whisper-tiny encoder inside the checkpoint (``wav2vec`` is not used)."""
        return self.models.whisper

    def audio_features(self, wav2vec, waveform, sample_rate: int, fps: float, *, device=None,
                       progress=None, cancel=None):
        """Whisper features (``wav2vec`` is ignored: the encoder is inside the checkpoint)."""
        from ..audio.whisper_features import extract_whisper_features

        encoder = self.models.whisper if self.models is not None else wav2vec
        if encoder is None:
            raise EMOInputError("an EchoMimic checkpoint needs its whisper encoder; load the "
                                "checkpoint first")
        if progress is not None:
            progress(0, 1)
        features = extract_whisper_features(encoder, waveform, sample_rate, fps, device=device,
                                            cancel=cancel)
        if progress is not None:
            progress(1, 1)
        return features

    # ------------------------------------------------------------------ sampling
    def start_video(self, inputs: VideoInputs, settings) -> _EchoVideo:
        from .echomimic_parts import echo_reference, guidance_rows

        if getattr(inputs.audio, "front_end", None) != self.audio_front_end:
            raise EMOInputError("emo_audio: EchoMimic needs whisper features; compute them "
                                "with this checkpoint's models")
        device, dtype = self.placement
        mask = torch.as_tensor(inputs.face_mask, dtype=torch.float32)
        if mask.ndim == 3:  # one mask for the whole video, as EchoMimic takes it
            mask = mask.amax(dim=0)
        face = self.models.face_locator(mask[None, None].to(device, dtype))
        guidance = float(settings.guidance_reference) > 1.0
        reference = echo_reference(self.models, inputs.reference.latents.to(device, dtype))
        return _EchoVideo(inputs, guidance_rows(reference, guidance), face, guidance)

    def clip_spans(self, total_frames: int, settings) -> list:
        from ..pipeline.clips import ClipSpan

        return [ClipSpan(index=0, start=0, length=total_frames, keep=total_frames)]

    def clip_inputs(self, state: _EchoVideo, span, motion):
        return state

    def initial_noise(self, generator, shape):
        """EchoMimic draws ``(b, c, f, h, w)`` noise and clamps it to [-1.5, 1.5]."""
        batch, frames, channels, height, width = shape
        noise = torch.randn((batch, channels, frames, height, width), generator=generator)
        return noise.clamp(-INIT_NOISE_CLAMP, INIT_NOISE_CLAMP).permute(0, 2, 1, 3, 4)

    def make_scheduler(self, settings):
        from diffusers import DDIMScheduler

        from ..io.echomimic import ECHOMIMIC_SCHEDULER

        return DDIMScheduler.from_config(self.sampling.get("scheduler") or ECHOMIMIC_SCHEDULER)

    def guidance(self, settings, steps: int) -> StepGuidance:
        return _EchoGuidance(float(settings.guidance_reference))

    def predict(self, sample, timestep, clip: _EchoVideo, rows, settings) -> torch.Tensor:
        from .echomimic_parts import sliding_predict

        step, guidance = rows
        cfg = self.sampling
        return sliding_predict(self.models, sample, timestep, step, clip.reference,
                               clip.inputs.audio, clip.face, guidance,
                               int(cfg.get("context_frames", 12)),
                               int(cfg.get("context_overlap", 3)))

    # ------------------------------------------------------------------ training
    def training_forward(self, *args) -> torch.Tensor:
        raise EMOInputError("training is not supported for EchoMimic checkpoints; train an EMO "
                            "checkpoint (init-checkpoint) instead")
