"""Runtime knobs of one generation run (never part of the model config).

Each field is defined once, here: default, help text, range and choices (:func:`setting`, see
``setting_spec.py``). The ``generate`` options (``emo_core/cli/settings_args.py``), the EMO Sampler
widgets (``nodes/settings_inputs.py``) and :meth:`GenerationSettings.validate` are derived from it.
A light module (no torch): the CLI parser imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..errors import EMOInputError
from ..prediction import PREDICTION_TYPES
from .scheduler import SCHEDULERS, schedulers_help
from .setting_spec import check_setting, setting, settings_of

GUIDANCE_MODES = ("separate", "joint")
FIRST_CLIP_MOTION = ("zeros", "reference")

# The settings a Hallo checkpoint decides itself (Hallo's released inference; a converted
# checkpoint's ``sampling`` config may refine them): shown in each field's help, read by
# ``emo_core.families.hallo``. A family that runs with its own values declares them here.
_HALLO = {"fps": 25, "guidance_reference": 3.5, "guidance_mode": "joint", "guidance_refresh": 1,
          "frames_per_clip": 16, "motion_frames": 2, "first_clip_motion": "reference",
          "scheduler": "ddim-vpred-trailing"}


def _hallo_own(name: str) -> dict:
    return {"Hallo": _HALLO[name]}


# Named presets: preset -> the settings it gives (changes from the field defaults). Chosen by
# measurement (benchmarks/bench_preset_quality.py, README "Fast preset"). Applied by
# GenerationSettings.apply_preset: a setting left at its field default takes the preset's value;
# a setting changed from its default keeps the user's value.
PRESETS: dict[str, dict] = {
    "standard": {},  # the field defaults (named so: argparse prints "(default: standard)")
    "fast": {"steps": 16, "scheduler": "dpmpp-2m"},
}


def presets_help() -> str:
    """``"fast: steps 16, scheduler dpmpp-2m"`` (every preset but ``standard``)."""
    return "; ".join(f"{name}: " + ", ".join(f"{k} {v}" for k, v in values.items())
                     for name, values in PRESETS.items() if values)


def preset_changes(name: str) -> dict:
    """The settings preset ``name`` gives; ``EMOInputError`` naming ``--preset`` and the choices
    for an unknown name."""
    if not isinstance(name, str) or name not in PRESETS:
        raise EMOInputError(f"unknown preset {name!r} (--preset, or the EMO Sampler's preset "
                            f"widget): choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class GenerationSettings:
    """Everything a run needs besides the models and the media.

    ``guidance_mode="separate"``: ``eps = u + s_ref (r - u) + s_aud (ra - r)`` (3 batched branches);
    ``"joint"``: ``eps = u + s_ref (ra - u)`` (2 branches, ``guidance_audio`` unused).
    ``prediction_type`` overrides what the checkpoint says it was trained for (None: the
    checkpoint's ``sampling.prediction_type``, epsilon for SD1.5-initialised weights);
    ``motion_frames=None`` takes the checkpoint's own count (``backbone.motion_frames``, resolved
    by :meth:`for_model` before sampling);
    scheduler ``"ddim-vpred-trailing"`` forces v-prediction with zero terminal SNR and trailing
    spacing (Hallo/EchoMimic-style weights).
    """

    fps: float = setting(
        25.0, "video frame rate in frames per second, fractional allowed (e.g. 12.5, 24, 29.97)",
        minimum=1.0, maximum=120.0, step=0.01, node=False,  # node: Wav2Vec Audio Features
        families=_hallo_own("fps"))
    steps: int = setting(
        40, "denoising steps per clip: 40 is the paper's DDIM setting; fewer is proportionally "
        "faster and less detailed", minimum=1, maximum=1000)
    seed: int = setting(
        0, "noise seed; the same seed and inputs give the same video", minimum=0,
        maximum=2**64 - 1)
    guidance_reference: float = setting(
        2.0, "pull towards the reference identity (1 = no guidance): higher = closer likeness, "
        "but stiffer and over-saturated beyond ~4; in joint mode the one scale for both",
        minimum=0.0, maximum=30.0, step=0.1, families=_hallo_own("guidance_reference"))
    guidance_audio: float = setting(
        3.5, "pull towards the audio, lip sync and expression (1 = no guidance): higher = "
        "stronger mouth motion, artefacts beyond ~6; unused in joint mode",
        minimum=0.0, maximum=30.0, step=0.1)
    guidance_mode: str = setting(
        "separate", "separate: reference and audio scales apart (3 rows on each guided step, "
        "see guidance_refresh); joint: the reference scale for both (2 rows, faster)",
        choices=GUIDANCE_MODES, families=_hallo_own("guidance_mode"))
    # Guidance on a part of the steps only (docs/ARCHITECTURE.md, "Guidance schedule").
    guidance_start: float = setting(
        0.0, "fraction of the steps (noisiest first) where guidance starts",
        minimum=0.0, maximum=1.0, step=0.01)
    guidance_end: float = setting(
        1.0, "fraction of the steps where guidance ends; later steps run the conditional branch "
        "alone (1 = guidance to the last step)", minimum=0.0, maximum=1.0, step=0.01)
    guidance_refresh: int = setting(
        3, "run the guidance branches every N-th step inside the interval and reuse their last "
        "difference in between (1 = every step, the slowest; 3 costs a little lip sync, paired "
        "-0.008 r, README)",
        minimum=1, maximum=1000, families=_hallo_own("guidance_refresh"))
    frames_per_clip: int = setting(
        12, "frames generated together (paper: 12): longer clips are smoother but use more "
        "memory; clip + motion frames must fit the checkpoint's temporal position table",
        minimum=1, maximum=32, families=_hallo_own("frames_per_clip"))
    motion_frames: int | None = setting(
        None, "last frames of a clip that condition the next (paper: 4); 0 makes clips "
        "independent (visible seams)", minimum=0, maximum=31, unset="the checkpoint's own count",
        families=_hallo_own("motion_frames"))
    first_clip_motion: str = setting(
        "zeros", "motion frames of the first clip: zeros (paper) or the reference latent "
        "repeated (steadier start)", choices=FIRST_CLIP_MOTION,
        families=_hallo_own("first_clip_motion"))
    scheduler: str = setting(
        "ddim", f"sampler; {schedulers_help()}", choices=SCHEDULERS,
        families=_hallo_own("scheduler"))
    prediction_type: str | None = setting(
        None, "what the model output is read as, overriding the checkpoint",
        choices=PREDICTION_TYPES, node=False,  # the checkpoint says; a CLI override only
        unset="what the checkpoint was trained for, epsilon for SD1.5-initialised weights")
    decode_batch: int = setting(
        8, "frames decoded per VAE call: more is faster and uses more memory",
        minimum=1, maximum=256)
    size: int = setting(
        512, "square generation size in pixels (the model is trained at 512)",
        minimum=64, maximum=2048, step=64, node=False)  # node: Encode Reference's size
    compile: bool = setting(
        False, "compile the ReferenceNet and Backbone with torch.compile (once per guidance "
        "layout, reused across clips and runs): a slower first clip, faster after, mainly on a GPU")
    preset: str = setting(
        "standard", f"named settings chosen by measurement (README, Fast preset): {presets_help()}"
        "; a setting you changed keeps your value, the rest take the preset's",
        choices=PRESETS)

    def replace(self, **changes) -> GenerationSettings:
        return replace(self, **changes)

    def apply_preset(self) -> GenerationSettings:
        """These settings with :attr:`preset`'s values in every field the preset names that is
        still at its field default (a field changed from its default keeps its value). Idempotent.
        Applied by :meth:`for_model` (the EMO family's ``resolve_settings``), so the CLI, the EMO
        Sampler and the Python API run a preset alike; families with their own sampling (Hallo,
        EchoMimic) ignore it with a warning (``fixed_settings``): it was measured on EMO weights."""
        changes = {name: value for name, value in preset_changes(self.preset).items()
                   if getattr(self, name) == SETTINGS[name].default}
        return self.replace(**changes) if changes else self

    def validate(self) -> GenerationSettings:
        """Raise ``EMOInputError`` naming the first bad field; return self for chaining."""
        preset_changes(self.preset)  # an unknown preset: the error names --preset and the choices
        for item in SETTINGS.values():
            check_setting(item, getattr(self, item.name))
        if self.guidance_start > self.guidance_end:
            raise EMOInputError(
                "guidance_start must not be above guidance_end (fractions of the steps), got "
                f"{self.guidance_start} and {self.guidance_end}")
        if (self.motion_frames or 0) + self.frames_per_clip > MAX_CLIP_FRAMES:
            raise EMOInputError(
                f"motion_frames + frames_per_clip must be <= {MAX_CLIP_FRAMES} (the largest "
                f"temporal position table), got {self.motion_frames} + {self.frames_per_clip}; "
                "lower one of them")
        return self

    def for_model(self, backbone_config: Mapping) -> GenerationSettings:
        """Check these settings against a checkpoint's Backbone config (``motion_frames``,
        ``motion_max_frames``) and fill ``motion_frames=None`` from it. Raises
        ``EMOInputError`` before any sampling when a clip would not fit the temporal modules'
        position table: a clip holds ``frames_per_clip`` frames plus the motion frames (the
        checkpoint's own count of zero maps where no previous clip exists). Applies
        :attr:`preset` first (:meth:`apply_preset`)."""
        trained = int(backbone_config.get("motion_frames", 4))
        table = int(backbone_config.get("motion_max_frames", MAX_CLIP_FRAMES))
        settings = self.apply_preset()
        if settings.motion_frames is None:
            settings = settings.replace(motion_frames=trained)
        motion = max(settings.motion_frames, trained)
        if settings.frames_per_clip + motion > table:
            which = ("motion_frames" if settings.motion_frames >= trained
                     else f"the checkpoint's {trained} zero motion frames of the first clip")
            raise EMOInputError(
                f"frames_per_clip {settings.frames_per_clip} + {motion} motion frames ({which}) "
                f"exceeds the {table}-frame position table of this checkpoint's temporal "
                f"modules; use frames_per_clip <= {table - motion}")
        return settings.validate()


SETTINGS = settings_of(GenerationSettings)  # name -> Setting (type, default, spec), field order
# A clip (motion + new frames) never exceeds the longest one a widget allows; the checkpoint's
# own table (``motion_max_frames``, 24 or 32 for SD1.5 motion modules) is checked by for_model.
MAX_CLIP_FRAMES = SETTINGS["frames_per_clip"].spec.maximum
FPS_RANGE = (SETTINGS["fps"].spec.minimum, SETTINGS["fps"].spec.maximum)
