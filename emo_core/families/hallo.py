"""The Hallo family: a ``convert-hallo`` checkpoint run as Hallo's released inference runs it.

Overrides (numbers equal Hallo's own, ``tests/test_hallo_equivalence.py``): Hallo's audio module
and site order (``models/hallo_sites.py``); its audio front-end (all wav2vec layers, padded to
whole clips, ``audio/hallo_features.py``); per-video conditions of the portrait (insightface face
embedding -> identity tokens, MediaPipe region masks, ``face_region`` for the Face Locator, so the
user's face mask is unused); CFG rows ``[uncond, cond]`` with one joint scale at every step; its
DDIM (v-prediction, zero terminal SNR, trailing); clips of 16 + 2 chained by the last ``n``
DECODED frames re-encoded; progress in denoising steps. The speed input reaches the model when
the checkpoint has speed layers (``init-checkpoint --from-hallo``), in every front-end alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import EMOInputError
from .base import JointCFG, LatentFormat, ModelFamily, StepGuidance, VideoInputs

logger = logging.getLogger(__name__)

FACE_HINT = ("a Hallo checkpoint needs a face embedding: pass the insightface models folder "
             "(Hallo's pretrained_models/face_analysis/models, or ComfyUI "
             "models/insightface/models/buffalo_l) as face_analysis")


@dataclass
class HalloConditions:
    """Per-video conditions: ``face_embedding (1, 512)``; ``face_region (1, 3, H, W)`` in
    [0, 1]; ``full/face/lip_masks``: per UNet level ``(h_i * w_i,)`` or ``(f, h_i * w_i)``
    soft masks (level i = latent / 2**i)."""

    face_embedding: torch.Tensor
    face_region: torch.Tensor
    full_masks: list
    face_masks: list
    lip_masks: list

    @property
    def masks(self) -> tuple[list, list, list]:
        return self.full_masks, self.face_masks, self.lip_masks

    def to(self, device, dtype) -> HalloConditions:
        def move(value):
            if isinstance(value, list):
                return [move(v) for v in value]
            return torch.as_tensor(value).to(device=device, dtype=dtype)

        return HalloConditions(*(move(getattr(self, name)) for name in (
            "face_embedding", "face_region", "full_masks", "face_masks", "lip_masks")))


@dataclass
class HalloSampling:
    """Sampling settings; defaults are Hallo's released inference config."""

    steps: int = 40
    guidance_scale: float = 3.5
    motion_scale: tuple = (1.0, 1.0, 1.0)
    scheduler: dict = field(default_factory=dict)
    latent_scale: float = 0.18215
    bank_dtype: torch.dtype | None = torch.float16
    motion_mode: str | None = None  # None: the checkpoint's ("train" for converted Hallo)
    # Hallo's released loop pads the last clip to a whole clip and drops the extra frames; True
    # reproduces that bit for bit (the golden tests), False generates the kept frames only.
    pad_last_clip: bool = False

    @classmethod
    def from_models(cls, models, **overrides) -> HalloSampling:
        cfg = dict(getattr(models, "sampling", {}) or {})
        values = {k: cfg[k] for k in ("steps", "guidance_scale", "latent_scale") if k in cfg}
        if "motion_scale" in cfg:
            values["motion_scale"] = tuple(cfg["motion_scale"])
        values["scheduler"] = dict(cfg.get("scheduler") or {})
        values.update(overrides)
        return cls(**values)


@dataclass
class _HalloVideo:
    """Per-video state: the reference latents, the conditions on the model's device, the Face
    Locator's output (the same for every clip), speed tokens of the padded video or None."""

    inputs: VideoInputs
    conditions: HalloConditions
    face: torch.Tensor
    speed_tokens: torch.Tensor | None


class HalloFamily(ModelFamily):
    name = "hallo"
    title = "Hallo"
    audio_front_end = "hallo"
    prepare_progress_units = 0
    reference_models = ("face_analysis", "mediapipe")
    fixed_settings = {
        "guidance_mode": "one joint CFG scale (guidance_reference sets it)",
        "guidance_audio": "one joint CFG scale (guidance_reference sets it)",
        "guidance_start": "CFG at every step",
        "guidance_end": "CFG at every step",
        "guidance_refresh": "CFG at every step",
        "frames_per_clip": "the checkpoint's clip length (its motion modules are trained on it)",
        "motion_frames": "the checkpoint's motion frames (its motion modules are trained on them)",
        "first_clip_motion": "the reference as the first clip's motion frames",
        "scheduler": "its own DDIM (v-prediction, zero terminal SNR, trailing)",
        "prediction_type": "v-prediction",
        "preset": "its own sampling; the presets are measured on EMO weights",
    }

    def __init__(self, models=None, configs=None, sampling: HalloSampling | None = None):
        super().__init__(models, configs)
        self._sampling_override = sampling

    # ------------------------------------------------------------------ model construction
    @classmethod
    def install_sites(cls, backbone, by_block: dict) -> int:
        from ..models.hallo_sites import install_hallo_sites

        return install_hallo_sites(backbone, by_block)

    @classmethod
    def call_extras(cls, backbone, *, with_audio, audio_masks, motion_scale, motion_mode, batch,
                    frames, sample):
        from ..models.hallo_sites import hallo_call_inputs

        return hallo_call_inputs(backbone, with_audio, audio_masks, motion_scale, motion_mode,
                                 batch, frames, sample)

    # ------------------------------------------------------------------ settings
    def sampling_defaults(self) -> dict:
        """The declared Hallo values (``pipeline/settings.py``), the checkpoint's clip layout,
        fps and CFG scale over them, and what Hallo does with the settings it ignores."""
        own = self.declared_defaults()
        for key, name in (("clip_frames", "frames_per_clip"), ("motion_frames", "motion_frames"),
                          ("fps", "fps"), ("guidance_scale", "guidance_reference")):
            own[name] = self.sampling.get(key, own[name])
        return {**own, "guidance_audio": None, "guidance_start": 0.0, "guidance_end": 1.0,
                "prediction_type": "v_prediction"}

    def hallo_sampling(self, settings) -> HalloSampling:
        """Hallo's sampling from the checkpoint with the user's steps; ``guidance_reference`` is
        the joint CFG scale when changed from the EMO default (else the checkpoint's)."""
        if self._sampling_override is not None:
            return self._sampling_override
        from ..pipeline.settings import GenerationSettings

        overrides = {"steps": settings.steps}
        if settings.guidance_reference != GenerationSettings().guidance_reference:
            overrides["guidance_scale"] = float(settings.guidance_reference)
        return HalloSampling.from_models(self.models, **overrides)

    def resolve_settings(self, settings):
        """Hallo's clip layout and fps (its motion modules are trained on them) with the
        user's steps, seed, size and CFG scale."""
        own = self.sampling_defaults()
        if float(settings.fps) != float(own["fps"]):
            logger.warning("Hallo checkpoint: video runs at its %s fps, not %s", own["fps"],
                           settings.fps)
        steps = settings.steps if self._sampling_override is None \
            else self._sampling_override.steps
        return settings.replace(frames_per_clip=int(own["frames_per_clip"]),
                                motion_frames=int(own["motion_frames"]), steps=steps,
                                fps=float(own["fps"])).validate()

    def uses_face_mask(self) -> bool:
        return False  # the Face Locator reads Hallo's own face region (reference_conditions)

    def latent_scale(self) -> float:
        return float(self.sampling.get("latent_scale", 0.18215))

    @property
    def latent_format(self) -> LatentFormat:
        if self._sampling_override is not None:
            return LatentFormat(self._sampling_override.latent_scale)
        return LatentFormat(self.latent_scale())

    # ------------------------------------------------------------------ inputs
    def check_request(self, request) -> None:
        if getattr(request, "hallo_conditions", None) is None:
            from ..pipeline.preflight import check_face_analysis_folder

            check_face_analysis_folder(request.face_analysis)

    def prepare_portrait(self, request, settings):
        """The whole image resized to the video size (Hallo expects a square image and
        stretches others), with the conditions Hallo computes on the image as loaded."""
        from PIL import Image

        from ..image import load_image_file
        from ..pipeline.run import PreparedPortrait

        image = load_image_file(request.image)
        conditions = request.hallo_conditions or self.reference_conditions(
            image, face_analysis=request.face_analysis, mediapipe=request.mediapipe,
            size=settings.size)
        height, width = image.shape[:2]
        if height != width:
            logger.warning("Hallo expects a square reference image; %dx%d is stretched to "
                           "%dx%d as Hallo does (crop it square for correct proportions)",
                           width, height, settings.size, settings.size)
        size = (settings.size, settings.size)
        portrait = np.array(Image.fromarray(image).resize(size, Image.BILINEAR))
        return PreparedPortrait(image, None, portrait, None, conditions)

    def audio_features(self, wav2vec, waveform, sample_rate: int, fps: float, *, device=None,
                       progress=None, cancel=None):
        """Hallo's front-end at the checkpoint's fps (a different ``fps`` is warned about)."""
        from ..audio.features import AudioFeatures
        from ..audio.hallo_features import hallo_audio_features, hallo_audio_windows
        from ..audio.waveform import to_mono_16k

        own = int(self.sampling.get("fps", 25))
        if abs(float(fps) - own) > 1e-6:
            logger.warning("Hallo checkpoint: audio features at its %d fps, not %g (the video "
                           "runs at %d fps)", own, fps, own)
        wave = to_mono_16k(waveform, sample_rate)
        param = next(wav2vec.parameters())
        features, frames = hallo_audio_features(
            wav2vec, wave.to(param.device), fps=own,
            clip_frames=int(self.sampling.get("clip_frames", 16)))
        return AudioFeatures(windows=hallo_audio_windows(features.cpu()), num_frames=frames,
                             fps=float(own), waveform_16k=wave, front_end=self.audio_front_end)

    def reference_conditions(self, portrait, *, face_analysis=None, mediapipe=None, size=None):
        """Face embedding + region masks of the portrait as given (Hallo computes both on its
        input image); masks for a ``size`` video (default: the portrait's side)."""
        if face_analysis is None:
            raise EMOInputError(FACE_HINT)
        from ..face.embedding import FaceEmbedder
        from ..face.hallo_masks import hallo_region_masks

        embedding = FaceEmbedder(face_analysis).embed(portrait, zeros_if_no_face=True)
        masks = hallo_region_masks(portrait, mediapipe, (size or portrait.shape[0]) // 8)
        return HalloConditions(torch.from_numpy(np.asarray(embedding, np.float32))[None],
                               masks.face_region[None], masks.full, masks.face, masks.lip)

    # ------------------------------------------------------------------ sampling
    def start_video(self, inputs: VideoInputs, settings) -> _HalloVideo:
        if not isinstance(inputs.conditions, HalloConditions):
            raise EMOInputError("reference: encoded for EMO weights; encode the reference with "
                                "this Hallo checkpoint's models (face embedding + masks)")
        clips = -(-inputs.num_frames // settings.frames_per_clip)
        padded = clips * settings.frames_per_clip
        last = self.clip_spans(inputs.num_frames, settings)[-1]
        needed = last.start + last.length
        if inputs.audio.windows.shape[0] < needed:
            raise EMOInputError(
                f"audio windows cover {inputs.audio.windows.shape[0]} frames, need {needed} for "
                f"{inputs.num_frames} frames in clips of {settings.frames_per_clip}; compute "
                f"them with this checkpoint's audio front-end")
        device, dtype = self.placement
        conditions = inputs.conditions.to(device, dtype)
        face = self.models.face_locator(conditions.face_region)  # once per video
        return _HalloVideo(inputs, conditions, face,
                           self._speed_tokens(inputs.speed, padded, device, dtype))

    def _speed_tokens(self, speed, padded: int, device, dtype):
        """``(F,)`` deg/frame -> ``(1, padded, S, Ds)`` (the last speed repeats into the
        padding, windows over the whole video as in EMO); None without speed layers."""
        if speed is None or self.models.speed_encoder is None:
            return None
        speed = torch.cat([speed, speed[-1:].expand(padded - speed.shape[0])])
        return self.models.speed_encoder(speed[None].to(device)).to(dtype)

    def clip_spans(self, total_frames: int, settings) -> list:
        """The kept frames only, or Hallo's padded last clip (``HalloSampling.pad_last_clip``,
        bit-exact with Hallo's released loop; docs/ARCHITECTURE.md "Last clip")."""
        from ..pipeline.clips import clip_spans

        return clip_spans(total_frames, settings.frames_per_clip,
                          pad_last=self.hallo_sampling(settings).pad_last_clip)

    def first_motion(self, state: _HalloVideo, settings):
        latents = state.inputs.reference.latents.to(*self.placement)
        return latents[:, None].expand(1, settings.motion_frames, *latents.shape[1:])

    def next_motion(self, state, latents: torch.Tensor, settings):
        """The last ``n`` frames decoded, clamped, mapped to [-1, 1] and re-encoded."""
        from .hallo_parts import decode_frames, encode_pixels

        vae, fmt, n = self.models.vae, self.latent_format, settings.motion_frames
        frames = decode_frames(vae, latents[0, -n:], fmt)
        return encode_pixels(vae, frames * 2 - 1, fmt)[None]

    def clip_inputs(self, state: _HalloVideo, span, motion):
        from .hallo_parts import clip_inputs

        device, dtype = self.placement
        window = slice(span.start, span.start + span.length)
        windows = state.inputs.audio.windows[window]
        tokens = self.models.audio_projection(windows[None].to(device, dtype))
        speed = None if state.speed_tokens is None else state.speed_tokens[:, window]
        return clip_inputs(self.models, state.conditions, tokens,
                           state.inputs.reference.latents.to(device, dtype), motion,
                           speed_tokens=speed, face=state.face)

    def initial_noise(self, generator, shape):
        """Hallo draws ``(b, c, f, h, w)`` noise for a whole clip; the Backbone takes ``(b, f, c,
        h, w)``. A shorter last clip takes the first frames of a whole clip's draw, so each kept
        frame starts from the noise Hallo's padded loop gives it (in this layout a smaller draw
        would give every frame other numbers)."""
        batch, frames, channels, height, width = shape
        whole = max(frames, int(self.sampling_defaults()["frames_per_clip"]))
        noise = torch.randn((batch, channels, whole, height, width), generator=generator)
        return noise[:, :, :frames].permute(0, 2, 1, 3, 4)

    def make_scheduler(self, settings):
        from diffusers import DDIMScheduler

        from ..io.hallo import HALLO_SCHEDULER

        return DDIMScheduler.from_config(self.hallo_sampling(settings).scheduler
                                         or HALLO_SCHEDULER)

    def guidance(self, settings, steps: int) -> StepGuidance:
        return JointCFG(self.hallo_sampling(settings).guidance_scale)

    def predict(self, sample, timestep, clip, rows, settings) -> torch.Tensor:
        from .hallo_parts import hallo_denoise

        return hallo_denoise(self.models, sample, timestep, clip, self.hallo_sampling(settings))

    def log_defaults(self, checkpoint: str) -> None:
        """One line with the sampling the checkpoint brings (what EMO Sampler will use)."""
        cfg = self.sampling
        scheduler = cfg.get("scheduler", {})
        logger.info(
            "%s is a Hallo checkpoint: EMO Sampler uses its defaults: %s+%s frames per clip at "
            "%s fps, joint CFG %s, motion scale %s, DDIM %s/%s%s; steps and seed come from the "
            "sampler; speed %s", checkpoint, cfg.get("clip_frames"), cfg.get("motion_frames"),
            cfg.get("fps"), cfg.get("guidance_scale"), cfg.get("motion_scale"),
            scheduler.get("prediction_type"), scheduler.get("timestep_spacing"),
            ", zero terminal SNR" if scheduler.get("rescale_betas_zero_snr") else "",
            "reaches its speed layers" if self.uses_speed() else "is ignored (no speed layers)")

    def ignored_options(self, *, speed_given: bool, paste_back: bool, settings) -> list[str]:
        ignored = []
        if speed_given and not self.uses_speed():
            ignored.append("the speed input (Hallo weights have no speed layers)")
        if paste_back:
            ignored.append("paste-back (Hallo animates the whole resized image, there is no "
                           "crop)")
        return ignored + self.ignored_settings(settings)

    # ------------------------------------------------------------------ training
    def trainable_groups(self, stage: int, stage2_trains_spatial: bool = True) -> frozenset:
        """Stage 3 trains the speed layers only: Hallo's trained motion modules stay as they are."""
        groups = super().trainable_groups(stage, stage2_trains_spatial)
        return groups - {"temporal"} if stage == 3 else groups

    def no_trainable_hint(self) -> str:
        return ("; a converted Hallo checkpoint has no speed layers: add them with "
                "`python -m emo_core init-checkpoint --from-hallo FILE --out NEW` and train NEW")

    def training_forward(self, *args) -> torch.Tensor:
        from ..training.hallo_step import hallo_forward

        return hallo_forward(self.models, *args)
