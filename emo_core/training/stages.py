"""Which EMO parameters train in each of the paper's three stages; everything else is frozen.

- stage 1 (images): ReferenceNet + Backbone spatial layers + Face Locator (+ the context token).
- stage 2 (video): adds the temporal modules (without their speed attention) and the audio layers
  (audio attention + audio projection); spatial layers keep training unless
  ``stage2_trains_spatial`` is False.
- stage 3 (speed): only the temporal modules (with their speed attention) and the speed encoder;
  audio layers and all spatial weights are frozen.
The checkpoint's model family decides (``ModelFamily.trainable_groups``): on a Hallo checkpoint
(speed layers added by ``init-checkpoint --from-hallo``) stage 3 trains the speed layers only.
The VAE never trains here.
"""

from __future__ import annotations

import logging

from torch import nn

from ..errors import EMOInputError
from ..models.speed_layers import SPEED_PARTS

logger = logging.getLogger(__name__)

TEMPORAL = ".motion_modules."
AUDIO = ".audio_modules."


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


def apply_stage(models: nn.Module, stage: int, stage2_trains_spatial: bool = True) -> list:
    """Set ``requires_grad`` for ``stage`` and return the trainable ``[(name, parameter)]``."""
    from ..families import family_of

    family = family_of(models)
    groups = family.trainable_groups(stage, stage2_trains_spatial)
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
        raise EMOInputError(f"stage {stage} selects no parameters (groups {sorted(groups)})"
                            f"{family.no_trainable_hint()}")
    logger.info("stage %d trains %s", stage, {k: f"{v / 1e6:.3f}M" for k, v in counts.items()})
    return trainable
