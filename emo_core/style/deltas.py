"""Apply ``strength * (style - base)`` to the SD1.5 spatial weights of the EMO UNets, per tensor.

Only parameters a plain ``UNet2DConditionModel`` with the EMO config has are touched (conv,
ResNet, spatial attention, time embedding); temporal, audio, speed, reference-cross and face
locator weights are never read or written. Backbone and ReferenceNet have separate strengths.

Memory: deltas are computed one tensor at a time in fp32 on the device of the parameter being
changed (or ``device`` when given, e.g. ``"cpu"`` when the GPU is full). Beyond the EMO model, at
most the style tensor, the base tensor, their fp32 difference and an fp32 working copy of the
parameter are alive at once: peak extra = about 4 x the largest UNet tensor (SD1.5: 1280x1280x3x3
conv = 59 MB fp32, so ~236 MB; the tiny test preset: well under 1 MB). Style/base files are
read lazily (safetensors) so neither full UNet copy is ever held.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch

from ..errors import EMOInputError
from .architecture import check_shapes_fit
from .spatial import spatial_shapes

logger = logging.getLogger(__name__)

COMPONENTS = ("backbone", "reference_net")


class DeltaSource(Protocol):
    """Where deltas come from (checkpoint files, LoRAs, ComfyUI MODELs)."""

    what: str  # names the input in messages
    needs_current: bool  # True when delta() subtracts the EMO weight itself (no base model)
    skipped: list[str]  # source keys that map to no SD1.5 UNet parameter

    def shapes(self) -> Mapping[str, tuple[int, ...]]:
        """``{diffusers parameter name: shape}`` of every tensor the source changes."""

    def delta(self, key: str, current: torch.Tensor, device: torch.device) -> torch.Tensor:
        """fp32 ``style - base`` for ``key`` on ``device`` (``current``: the EMO parameter)."""


@dataclass
class ComponentReport:
    """What one UNet received: tensors changed, max |applied delta|, L2 norm of all deltas."""

    name: str
    strength: float
    changed: int = 0
    max_abs: float = 0.0
    sum_squares: float = 0.0
    missing: list[str] = field(default_factory=list)  # source keys this UNet does not have

    @property
    def l2(self) -> float:
        return math.sqrt(self.sum_squares)

    def describe(self) -> str:
        return (f"{self.name}: strength {self.strength:g}, {self.changed} tensors changed, "
                f"max |delta| {self.max_abs:.9g}, L2 {self.l2:.9g}"
                + (f", {len(self.missing)} source tensors absent here" if self.missing else ""))


@dataclass
class StyleReport:
    """Result of :func:`apply_style_delta`; ``describe()`` is the log/UI text."""

    source: str
    components: dict[str, ComponentReport] = field(default_factory=dict)
    skipped_source_keys: list[str] = field(default_factory=list)
    largest_tensor_bytes: int = 0

    def describe(self) -> str:
        lines = [f"style delta from {self.source}:"]
        lines += [f"  {c.describe()}" for c in self.components.values()]
        if self.skipped_source_keys:
            lines.append(f"  {len(self.skipped_source_keys)} source tensors are not SD1.5 UNet "
                         f"weights and were ignored (first: {self.skipped_source_keys[:3]})")
        return "\n".join(lines)


def _check_strength(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or not -10.0 <= value <= 10.0:
        raise EMOInputError(f"{name} must be a number between -10 and 10, got {value}; "
                            "use 0..1 (1 = the full style), a little above 1 to exaggerate")
    return value


def _targets(models, strengths: Mapping[str, float]) -> dict[str, dict[str, torch.Tensor]]:
    """``{component: {spatial name: parameter}}`` for components with a non-zero strength."""
    out = {}
    for name in COMPONENTS:
        if strengths[name] == 0.0:
            continue
        unet = getattr(models, name).unet
        wanted = spatial_shapes(unet.config)
        params = unet.state_dict(keep_vars=True)
        out[name] = {k: params[k] for k in wanted if k in params}
    return out


@torch.no_grad()
def _apply_one(param: torch.Tensor, delta: torch.Tensor, strength: float, device,
               report: ComponentReport) -> None:
    work = param.detach().to(device=device, dtype=torch.float32, copy=True)
    applied = delta * strength
    work += applied
    param.copy_(work.to(device=param.device, dtype=param.dtype))
    peak = float(torch.linalg.vector_norm(applied, float("inf"))) if applied.numel() else 0.0
    if peak > 0.0:
        report.changed += 1
        report.max_abs = max(report.max_abs, peak)
        report.sum_squares += float(torch.linalg.vector_norm(applied, dtype=torch.float64)) ** 2


def apply_style_delta(models, source: DeltaSource, strength_backbone: float = 1.0,
                      strength_reference: float = 1.0, device=None) -> StyleReport:
    """Add ``strength * source.delta`` to ``models.backbone.unet`` / ``models.reference_net.unet``.

    ``models``: ``EMOModels`` (any object with ``backbone.unet`` and ``reference_net.unet``).
    Shapes are checked for every tensor before anything changes (a mismatch raises
    :class:`~emo_core.errors.CheckpointError` and leaves the model untouched). Strength 0 leaves
    a component bit-identical. Returns a :class:`StyleReport`.
    """
    strengths = {"backbone": _check_strength("style strength (backbone)", strength_backbone),
                 "reference_net": _check_strength("style strength (reference)",
                                                  strength_reference)}
    report = StyleReport(source=source.what, skipped_source_keys=list(source.skipped))
    targets = _targets(models, strengths)
    shapes = source.shapes()
    for name, params in targets.items():
        check_shapes_fit(shapes, params, source.what, name)
        report.components[name] = ComponentReport(
            name, strengths[name], missing=sorted(k for k in shapes if k not in params))
    for key in sorted(shapes):
        holders = [(n, p[key]) for n, p in targets.items() if key in p]
        shared = None
        for name, param in holders:
            where = torch.device(device) if device is not None else param.device
            if shared is None or source.needs_current:
                shared = source.delta(key, param, where)
                report.largest_tensor_bytes = max(report.largest_tensor_bytes,
                                                  shared.numel() * shared.element_size())
            _apply_one(param, shared.to(where), strengths[name], where, report.components[name])
    logger.info("%s", report.describe())
    return report
