"""Which EMO parameters train in each of the paper's three stages; everything else is frozen.

- stage 1 (images): ReferenceNet + Backbone spatial layers + Face Locator (+ the context token).
- stage 2 (video): adds the temporal modules (without their speed attention) and the audio layers
  (audio attention + audio projection); spatial layers keep training unless
  ``stage2_trains_spatial`` is False.
- stage 3 (speed): only the temporal modules (with their speed attention) and the speed encoder;
  audio layers and all spatial weights are frozen. On a Hallo-variant checkpoint (speed layers
  added by ``init-checkpoint --from-hallo``) only the speed layers train: Hallo's trained motion
  modules stay as they are.
The VAE never trains here.
"""

from __future__ import annotations

import logging

from torch import nn

from ..errors import EMOInputError

logger = logging.getLogger(__name__)

TEMPORAL = ".motion_modules."
AUDIO = ".audio_modules."
SPEED_PARTS = (".attention_blocks.2.", ".norms.2.")


def parameter_group(name: str) -> str:
    """Classify one ``EMOModels`` parameter name into a training group.

    Groups: ``reference``, ``spatial``, ``face``, ``context``, ``temporal``, ``speed_attention``,
    ``audio``, ``speed_encoder``, ``vae``.
    """
    top = name.split(".", 1)[0]
    if top == "backbone":
        if TEMPORAL in name:
            return "speed_attention" if any(p in name for p in SPEED_PARTS) else "temporal"
        return "audio" if AUDIO in name else "spatial"
    return {
        "reference_net": "reference",
        "face_locator": "face",
        "context": "context",
        "audio_projection": "audio",
        "image_projection": "context",  # Hallo variant: face-identity tokens
        "speed_encoder": "speed_encoder",
        "vae": "vae",
    }.get(top, "other")


def trainable_groups(stage: int, stage2_trains_spatial: bool = True,
                     variant: str = "emo") -> frozenset[str]:
    """Training groups of ``stage`` (1, 2 or 3) for a Backbone ``variant`` ("emo" | "hallo")."""
    image = {"reference", "spatial", "face", "context"}
    if stage == 1:
        return frozenset(image)
    if stage == 2:
        video = {"temporal", "audio"}
        return frozenset(video | image if stage2_trains_spatial else video)
    if stage == 3:
        speed = {"speed_attention", "speed_encoder"}
        return frozenset(speed if variant == "hallo" else speed | {"temporal"})
    raise ValueError(f"stage must be 1, 2 or 3, got {stage!r}")


def apply_stage(models: nn.Module, stage: int, stage2_trains_spatial: bool = True) -> list:
    """Set ``requires_grad`` for ``stage`` and return the trainable ``[(name, parameter)]``."""
    variant = models.backbone.config.variant
    groups = trainable_groups(stage, stage2_trains_spatial, variant)
    trainable = []
    counts: dict[str, int] = {}
    for name, parameter in models.named_parameters():
        group = parameter_group(name)
        train = group in groups
        parameter.requires_grad_(train)
        if train:
            trainable.append((name, parameter))
            counts[group] = counts.get(group, 0) + parameter.numel()
    if not trainable:
        hint = ("; a converted Hallo checkpoint has no speed layers: add them with "
                "`python -m emo_core init-checkpoint --from-hallo FILE --out NEW` and train NEW"
                if variant == "hallo" else "")
        raise EMOInputError(f"stage {stage} selects no parameters (groups {sorted(groups)}){hint}")
    logger.info("stage %d trains %s", stage, {k: f"{v / 1e6:.3f}M" for k, v in counts.items()})
    return trainable
