"""The model-family interface: everything that differs between EMO, Hallo (and Hallo2, EchoMimic).

A *family* is one object behind :class:`ModelFamily`, selected once from the checkpoint's config
(``backbone.variant``, see :func:`emo_core.families.family_of`). The rest of the package has ONE
clip loop (``pipeline.pipeline.EMOPipeline``), ONE end-to-end run (``pipeline.run``), ONE node
path (EMO Sampler) and ONE training step; each asks the family at the points listed below and
never compares family names. A new family is one new module here (a subclass registered in
``families/__init__.py``) plus its converter (``emo_core/io/<family>.py``).

What the shared code does, and where it asks the family (``F.`` = this interface):

====================  ==========================================================================
stage                 hook
====================  ==========================================================================
build the Backbone    ``F.install_sites(backbone, by_block)``: audio modules + site runners
settings              ``F.sampling_defaults``, ``F.resolve_settings``, ``F.ignored_settings``
audio front-end       ``F.audio_features(...)`` -> :class:`~emo_core.audio.features.AudioFeatures`;
                      ``F.audio_encoder(wav2vec)``: the module it runs (the nodes load it first)
reference conditions  ``F.reference_conditions(...)``: per-video extras of the portrait (Hallo:
                      face embedding + region masks; EMO: None)
one video             ``F.start_video(...)`` -> a family-private state (per-video encodings)
clip layout           ``F.clip_spans(total_frames, settings)`` (EchoMimic: one span, the video;
                      the last clip denoises only the frames it keeps unless the family says)
one clip              ``F.clip_inputs(state, span, motion)`` -> family-private clip inputs
noise                 ``F.initial_noise(generator, shape)``
scheduler             ``F.make_scheduler(settings)``
one step              ``F.guidance(settings, steps)`` -> :class:`StepGuidance` (rows + mixing) and
                      ``F.predict(sample, timestep, clip, rows, settings)``: the model output for
                      this step (EchoMimic: its sliding context windows, averaged, live here)
clip chaining         ``F.first_motion(state, settings)`` / ``F.next_motion(state, latents,
                      settings)`` (EMO: last n latents; Hallo: decoded, re-encoded frames;
                      EchoMimic: None)
latents <-> VAE       ``F.latent_format`` (:class:`LatentFormat`, the one place of the scale)
training              ``F.trainable_groups(stage, ...)``, ``F.training_forward(...)``
====================  ==========================================================================

Tensor layouts: latents ``(b, f, 4, h, w)`` in model space (VAE latents x scale); per-frame audio
windows ``(F, 2m+1, L, C)``; speed ``(F,)`` deg/frame; face mask ``(S, S)`` or ``(F, S, S)``.
Hooks get the family's :class:`~emo_core.models.emo_models.EMOModels` as ``self.models``: a family
object is bound to one loaded bundle (``family_of(models)``), so per-model numbers (clip layout,
scales) are read once, at load time.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


@dataclass(frozen=True)
class LatentFormat:
    """VAE latents <-> model latents, the one place the scale is applied (as ComfyUI's
    ``LatentFormat.process_in/out``). ``process_in(vae_latents) = vae_latents * scale``."""

    scale: float = 0.18215

    def process_in(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE-space ``(..., 4, h, w)`` -> model space."""
        return latents * self.scale

    def process_out(self, latents: torch.Tensor) -> torch.Tensor:
        """Model-space ``(..., 4, h, w)`` -> VAE space (what a VAE decodes, ComfyUI's LATENT)."""
        return latents / self.scale


@dataclass(frozen=True)
class VideoInputs:
    """What one video is made from, as the clip loop hands it to :meth:`ModelFamily.start_video`.

    ``reference``: ``EncodedReference`` (``latents (1, 4, S/8, S/8)`` model space, ``image (S, S,
    3)`` uint8); ``audio``: ``AudioFeatures`` from THIS family's :meth:`audio_features`;
    ``face_mask``: ``(S, S)`` or ``(F, S, S)`` float or None (families that do not read it);
    ``speed``: ``(F,)`` deg/frame or None; ``conditions``: :meth:`reference_conditions`' value;
    ``generator``: the run's CPU generator, the one :meth:`initial_noise` draws from (Hallo2 draws
    each clip's motion mask from it in its chaining hooks, before that clip's noise)."""

    reference: Any
    audio: Any
    face_mask: torch.Tensor | None
    speed: torch.Tensor | None
    conditions: Any = None
    generator: torch.Generator | None = None

    @property
    def num_frames(self) -> int:
        return int(self.audio.num_frames)


class StepGuidance(ABC):
    """Guidance of one clip's denoising loop (one object per clip: it may keep state).

    ``rows(step)`` is what the family's :meth:`ModelFamily.predict` needs to build that step's
    batch (EMO: a ``GuidancePlan``, Hallo: the fixed ``[uncond, cond]`` pair); ``combine(step,
    out)`` mixes the ``(b, f, 4, h, w)`` model output rows into ``(1, f, 4, h, w)``."""

    @abstractmethod
    def rows(self, step: int) -> Any: ...

    @abstractmethod
    def combine(self, step: int, out: torch.Tensor) -> torch.Tensor: ...


class JointCFG(StepGuidance):
    """Classifier-free guidance over the fixed ``[uncond, cond]`` row pair at every step:
    ``u + s (c - u)`` (the operation order Hallo's and EchoMimic's code use)."""

    def __init__(self, scale: float):
        self.scale = scale

    def rows(self, step: int):
        return None  # always the same two rows

    def combine(self, step: int, out: torch.Tensor) -> torch.Tensor:
        uncond, cond = out.chunk(2)
        return uncond + self.scale * (cond - uncond)


class ModelFamily(ABC):
    """One model family bound to one loaded ``EMOModels`` bundle (``models``; None for hooks that
    need only the configs: ``sampling_defaults``, ``ignored_settings``, ``install_sites``).

    Subclasses set ``name`` (the checkpoint config's ``backbone.variant``) and ``title`` (for
    messages), and override the hooks their family does differently; the defaults here are
    EMO's, so a family states only what it changes.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    # GenerationSettings fields this family does not read -> what it does instead (a visible
    # warning names them when a user sets them to neither the EMO default nor the family's own).
    fixed_settings: ClassVar[Mapping[str, str]] = {}
    # Which audio front-end made an AudioFeatures (``AudioFeatures.front_end``): the sampler
    # refuses features from another family's front-end with a message naming both.
    audio_front_end: ClassVar[str] = "emo"
    # The audio model folder the front-end needs (``--wav2vec`` / the wav2vec2 input); None: the
    # audio encoder travels inside the checkpoint (EchoMimic's whisper).
    audio_model: ClassVar[str | None] = "wav2vec2"
    # Whether ``streamed_audio_features`` computes per clip window (issue 22): the CLI then reads
    # the audio file block by block (``audio/file_stream.py``) instead of holding its samples.
    streams_audio: ClassVar[bool] = False
    # Progress units a clip's preparation (ReferenceNet, condition encoders) counts before its
    # denoising steps: EMO reports it (``steps + 1`` per clip), Hallo reports steps only.
    prepare_progress_units: ClassVar[int] = 1
    # Model folders ``reference_conditions`` needs ("face_analysis", "mediapipe"): a front-end
    # resolves only these (EMO: none).
    reference_models: ClassVar[tuple[str, ...]] = ()

    def __init__(self, models=None, configs: Mapping | None = None):
        self.models = models
        if configs is None and models is not None:
            backbone = getattr(models, "backbone", None)
            configs = {"sampling": dict(getattr(models, "sampling", {}) or {}),
                       "backbone": dict(backbone.config) if backbone is not None else {}}
        self.configs: Mapping = configs or {}

    # ------------------------------------------------------------------ model construction
    @classmethod
    @abstractmethod
    def install_sites(cls, backbone, by_block: dict) -> int:
        """Create the Backbone's per-site layers (``block.motion_modules``, ``block.audio_modules``
        under the SD state-dict names) and install their site runners; ``by_block``: block name
        -> its ``Site`` list (``models.sites.unet_sites``). Returns the number of sites."""

    @classmethod
    def call_extras(cls, backbone, *, with_audio: bool, audio_masks, motion_scale, motion_mode,
                    batch: int, frames: int, sample: torch.Tensor):
        """Family-specific per-call inputs of the Backbone's site runners, checked and expanded
        (``EMOBackbone.call_inputs`` stores them in ``BackboneCall.hallo``); None for EMO."""
        return None

    # ------------------------------------------------------------------ settings
    @property
    def sampling(self) -> dict:
        """The sampling defaults the checkpoint carries (``configs["sampling"]``)."""
        return dict(self.configs.get("sampling", {}) or {})

    def declared_defaults(self) -> dict:
        """The GenerationSettings values declared for this family with the settings metadata
        (``setting(..., families={title: value})``, shown in the CLI help and node tooltips)."""
        from ..pipeline.settings import SETTINGS

        return {name: item.spec.families[self.title] for name, item in SETTINGS.items()
                if self.title in item.spec.families}

    def sampling_defaults(self) -> dict:
        """GenerationSettings values this family uses when the user leaves them at the EMO
        default: the declared ones, refined by the checkpoint's config (``{}`` for EMO)."""
        return self.declared_defaults()

    def resolve_settings(self, settings):
        """The settings this family runs with (validated, checkpoint defaults filled in)."""
        return settings.for_model(self.configs.get("backbone", {}))

    def ignored_settings(self, settings) -> list[str]:
        """``fixed_settings`` the user set to neither the EMO default nor this family's own value,
        each as ``"name=value (title uses ...)"``."""
        from ..pipeline.settings import GenerationSettings

        default, own = GenerationSettings(), self.sampling_defaults()
        return [f"{name}={getattr(settings, name)!r} ({self.title} uses {why})"
                for name, why in self.fixed_settings.items()
                if getattr(settings, name) not in (getattr(default, name), own.get(name))]

    def ignored_options(self, *, speed_given: bool, paste_back: bool, settings) -> list[str]:
        """Options of this run the family cannot use, each as a phrase for the visible warning
        ("<title> checkpoint: ignoring <phrase>"); never an error."""
        return self.ignored_settings(settings)

    def log_defaults(self, checkpoint: str) -> None:
        """Log what sampling this checkpoint brings when it is loaded (nothing for EMO)."""
        logger.debug("%s: %s checkpoint, the EMO Sampler's own defaults", checkpoint, self.title)

    def uses_speed(self) -> bool:
        """Whether a speed input reaches the model (the checkpoint has speed layers): the same
        answer for the CLI and EMO Sampler, asked in one place."""
        return self.models is None or self.models.speed_encoder is not None

    def uses_face_mask(self) -> bool:
        """Whether the Face Locator reads the user's face mask (Hallo: its own face region)."""
        return True

    # ------------------------------------------------------------------ inputs
    def check_request(self, request) -> None:
        """Preflight checks of a ``GenerateRequest`` this family adds (model folders it needs);
        reads no weights."""
        logger.debug("%s: no model folders to check beyond the common ones", self.title)

    def prepare_portrait(self, request, settings):
        """The image file of a ``GenerateRequest`` -> ``pipeline.run.PreparedPortrait`` (EMO: the
        face crop at ``settings.size`` and its Face Locator mask)."""
        from ..pipeline.run import prepare_portrait

        return prepare_portrait(request, settings)

    def audio_encoder(self, wav2vec):
        """The module :meth:`audio_features` runs, for a host that loads it first (the nodes'
        patchers): the given wav2vec2 model, or, when ``audio_model`` is None, the encoder the
        checkpoint carries (a child of ``self.models``)."""
        return wav2vec

    def audio_features(self, wav2vec, waveform, sample_rate: int, fps: float, *, device=None,
                       progress: ProgressFn | None = None, cancel: CancelFn | None = None):
        """This family's audio front-end -> ``AudioFeatures`` (``windows (F', 2m+1, L, C)``,
        ``F' >= num_frames``; ``fps`` may be replaced by the family's own)."""
        from ..audio.features import extract_audio_features

        return extract_audio_features(wav2vec, waveform, sample_rate, fps, device=device,
                                      progress=progress, cancel=cancel)

    def streamed_audio_features(self, wav2vec, waveform, sample_rate: int, fps: float, *,
                                device=None, cancel: CancelFn | None = None):
        """:meth:`audio_features` computed per clip window while sampling where this family's
        front-end streams (EMO: ``windows`` is a ``StreamedWindows`` that keeps ``wav2vec``);
        the eager result otherwise. Same numbers either way."""
        return self.audio_features(wav2vec, waveform, sample_rate, fps, device=device,
                                   cancel=cancel)

    def reference_conditions(self, portrait, *, face_analysis=None, mediapipe=None, size=None):
        """Per-video extras computed from the portrait ``(H, W, 3)`` uint8 for a ``size`` video
        (None for EMO); ``face_analysis``/``mediapipe``: model folders the family may need."""
        return None

    @property
    def placement(self) -> tuple[torch.device, torch.dtype]:
        """Where the bundle's Backbone is now (the caller put it there: the family never moves
        models, ComfyUI's patchers own them in the nodes)."""
        parameter = next(self.models.backbone.parameters())
        return parameter.device, parameter.dtype

    def check_inputs(self, inputs: VideoInputs, settings) -> VideoInputs:
        """Refuse inputs this family cannot sample from (``EMOInputError`` naming the input);
        returns them normalised (``speed`` a ``(F,)`` float32 tensor, or None when unused)."""
        from ._checks import check_face_mask, check_speed

        if self.uses_face_mask():
            check_face_mask(inputs.face_mask, settings.size, inputs.num_frames)
        speed = check_speed(inputs.speed, inputs.num_frames) if self.uses_speed() else None
        return dataclasses.replace(inputs, speed=speed)

    @property
    def latent_format(self) -> LatentFormat:
        vae = getattr(self.models, "vae", None)
        return LatentFormat(float(vae.config.scaling_factor) if vae is not None else 0.18215)

    # ------------------------------------------------------------------ sampling
    @abstractmethod
    def start_video(self, inputs: VideoInputs, settings) -> Any:
        """Per-video state: encodings that are the same for every clip (once per video)."""

    def clip_spans(self, total_frames: int, settings) -> list:
        """The clips (``pipeline.clips.ClipSpan``) the video is generated in. Each span's
        ``length`` is what the clip denoises and ``keep`` what the video keeps: the rule is the
        family's (default: the last clip generates only the frames it keeps; a family whose
        reference numbers need a padded last clip says so here, never in the clip loop)."""
        from ..pipeline.clips import clip_spans

        return clip_spans(total_frames, settings.frames_per_clip)

    @abstractmethod
    def clip_inputs(self, state, span, motion) -> Any:
        """Everything the clip's model calls need besides the latents (ReferenceNet once, the
        condition encoders once, reference K/V projected once), from ``motion``: the chained
        motion of the previous clip (:meth:`first_motion` for the first)."""

    def initial_noise(self, generator: torch.Generator, shape: tuple) -> torch.Tensor:
        """``shape = (1, f, 4, h, w)`` float32 CPU noise from ``generator``. Frame-major: a
        shorter last clip's draw equals the first frames of a whole clip's (torch's CPU
        generator fills a tensor in order), so its kept frames start from the noise a padded
        clip would give them; a family whose noise layout is not frame-major draws a whole clip
        and slices (Hallo)."""
        return torch.randn(shape, generator=generator, dtype=torch.float32)

    @abstractmethod
    def make_scheduler(self, settings):
        """A fresh diffusers scheduler for one clip."""

    @abstractmethod
    def guidance(self, settings, steps: int) -> StepGuidance:
        """The guidance of one clip of ``steps`` steps."""

    @abstractmethod
    def predict(self, sample: torch.Tensor, timestep, clip, rows, settings) -> torch.Tensor:
        """``sample: (1, f, 4, h, w)`` scheduler-scaled -> model output ``(b, f, 4, h, w)`` for
        the guidance ``rows`` of this step (``b`` rows, mixed by ``StepGuidance.combine``)."""

    def first_motion(self, state, settings):
        """The motion the first clip is chained from (None: the family's zero motion)."""
        return None

    def next_motion(self, state, latents: torch.Tensor, settings):
        """``latents: (1, f, 4, h, w)`` final latents of a clip -> the next clip's motion."""
        return None

    # ------------------------------------------------------------------ training
    def trainable_groups(self, stage: int, stage2_trains_spatial: bool = True) -> frozenset:
        """Parameter groups (``training.stages.parameter_group``) trained in ``stage``."""
        image = {"reference", "spatial", "face", "context"}
        if stage == 1:
            return frozenset(image)
        if stage == 2:
            video = {"temporal", "audio"}
            return frozenset(video | image if stage2_trains_spatial else video)
        if stage == 3:
            return frozenset({"speed_attention", "speed_encoder", "temporal"})
        raise ValueError(f"stage must be 1, 2 or 3, got {stage!r}")

    def no_trainable_hint(self) -> str:
        """Appended to the refusal when a stage selects no parameter of this checkpoint."""
        return ""

    @abstractmethod
    def training_forward(self, noisy, timesteps, reference_latents, motion_latents, mask, audio,
                         speed, reference_rows, audio_rows, motion_keep) -> torch.Tensor:
        """One training forward (``training.step.EMOTrainingModule.forward``'s arguments) ->
        prediction ``(b, f, 4, h, w)``."""
