"""Model families (EMO, Hallo, ...): the registry. See ``base.py`` for the interface.

A checkpoint names its family in its config (``backbone.variant``; ``"emo"`` when absent, as in
every checkpoint written before families existed). A family that runs another family's networks
differently (Hallo2 on Hallo's) is named by ``sampling.variant`` and subclasses that family: it
refines the Backbone's family only when it is registered and is such a subclass.
:func:`family_of` binds the family to a loaded bundle once, at load time; everything else asks
that object. An unknown name is refused with the list of families this version knows. Light
module: the family modules import torch-heavy parts inside their hooks only, so
``emo_core.models`` can ask for a family without importing the pipeline or training.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import EMOInputError
from .base import LatentFormat, ModelFamily, StepGuidance, VideoInputs
from .echomimic import EchoMimicFamily
from .emo import EMOFamily
from .hallo import HalloFamily
from .hallo2 import Hallo2Family

__all__ = ["FAMILIES", "LatentFormat", "ModelFamily", "StepGuidance", "VideoInputs",
           "family_class", "family_name", "family_of", "register_family"]

DEFAULT_FAMILY = "emo"
FAMILIES: dict[str, type[ModelFamily]] = {}


def register_family(cls: type[ModelFamily]) -> type[ModelFamily]:
    """Add a family class under ``cls.name`` (usable as a class decorator)."""
    FAMILIES[cls.name] = cls
    return cls


for _cls in (EMOFamily, HalloFamily, Hallo2Family, EchoMimicFamily):
    register_family(_cls)


def family_name(configs: Mapping) -> str:
    """The family a checkpoint's configs (``read_emo_configs``) name."""
    return _refined(str((configs.get("backbone") or {}).get("variant", DEFAULT_FAMILY)),
                    configs.get("sampling"))


def _refined(name: str, sampling: Mapping | None) -> str:
    """``sampling.variant`` when it names a registered subclass of the Backbone's family."""
    variant = (sampling or {}).get("variant")
    if variant in FAMILIES and name in FAMILIES and variant != name \
            and issubclass(FAMILIES[variant], FAMILIES[name]):
        return str(variant)
    return name


def family_class(name: str) -> type[ModelFamily]:
    """The registered family ``name``; a clean refusal naming the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise EMOInputError(
            f"model family {name!r} is not known to this version of EMO Portrait (it knows "
            f"{', '.join(sorted(FAMILIES))}); update the pack, or re-create the checkpoint with "
            "this version's converter") from None


def family_of(models=None, configs: Mapping | None = None) -> ModelFamily:
    """The family of a loaded ``EMOModels`` (or of checkpoint ``configs``), bound to it."""
    name = (_refined(models.backbone.config.variant, getattr(models, "sampling", None))
            if models is not None else family_name(configs or {}))
    return family_class(name)(models, configs)
