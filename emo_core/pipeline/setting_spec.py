"""Field metadata of the generation settings: the one definition the CLI, the nodes and
``validate()`` read.

Each :class:`~emo_core.pipeline.settings.GenerationSettings` field is declared with
:func:`setting`, which stores a :class:`SettingSpec` (help text, range, step, choices) in the
dataclass field's metadata next to its default. ``emo_core.cli.settings_args`` builds the
``generate`` options from it, ``nodes/settings_inputs.py`` the EMO Sampler widgets, and
:func:`check_setting` validates a value against it. A light module (standard library only): the
CLI parser imports it for ``--help``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from ..errors import EMOInputError

_KINDS = (bool, int, float, str)


@dataclass(frozen=True)
class SettingSpec:
    """What one setting means and accepts.

    ``help``: one text for the CLI help and the node tooltip (lower-case phrase, no final period).
    ``minimum``/``maximum``: inclusive range of numbers. ``step``: the widget increment; for ints
    also a constraint (the value is ``minimum`` plus a multiple of ``step``). ``choices``: the
    allowed strings, kept live (a registry dict works: its keys are the choices). ``unset``: what
    ``None`` means, for fields whose default is ``None``. ``node``: shown as an EMO Sampler widget
    (False where a node input gives the value or the checkpoint decides).
    """

    help: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: Collection[str] | None = None
    unset: str | None = None
    node: bool = True
    # Model families that run with their own value of this setting (family title -> value; the
    # checkpoint's ``sampling`` config may refine it): shown in the help, read by the family.
    families: Mapping[str, object] = dataclasses.field(default_factory=dict)

    @property
    def range_text(self) -> str:
        """``"1 to 120"``, ``"64 to 2048, a multiple of 64"`` or ``""`` without a range."""
        if self.minimum is None or self.maximum is None:
            return ""
        text = f"{self.minimum:g} to {self.maximum:g}" if isinstance(self.minimum, float) \
            else f"{self.minimum} to {self.maximum}"
        if isinstance(self.step, int) and self.step > 1:
            text += f", a multiple of {self.step}"
        return text


@dataclass(frozen=True)
class Setting:
    """One field as the front-ends see it: name, Python type, default, spec."""

    name: str
    kind: type
    default: object
    spec: SettingSpec


def setting(default, help: str, **spec) -> dataclasses.Field:
    """A dataclass field with its :class:`SettingSpec` (keywords as in SettingSpec). A field with
    ``families`` gets them in its help, so the CLI help and the node tooltips show each family's
    real default: ``"...; Hallo checkpoints: 16"``."""
    families = spec.get("families") or {}
    if families:
        help += "; " + ", ".join(f"{title} checkpoints: {value}"
                                 for title, value in families.items())
    return dataclasses.field(default=default, metadata={"setting": SettingSpec(help, **spec)})


def settings_of(cls) -> dict[str, Setting]:
    """Every field of the dataclass ``cls`` (in declaration order) with its spec and type.
    A field declared without :func:`setting` is a programming error, named here."""
    hints = typing.get_type_hints(cls)
    out = {}
    for field in dataclasses.fields(cls):
        spec = field.metadata.get("setting")
        if spec is None:
            raise TypeError(f"{cls.__name__}.{field.name} has no SettingSpec: declare it with "
                            "setting(default, help, ...) so the CLI and the nodes can show it")
        kinds = [k for k in typing.get_args(hints[field.name]) or (hints[field.name],)
                 if k is not type(None)]
        if len(kinds) != 1 or kinds[0] not in _KINDS:
            raise TypeError(f"{cls.__name__}.{field.name}: type {hints[field.name]} is not one "
                            f"of {[k.__name__ for k in _KINDS]} (or Optional of one)")
        out[field.name] = Setting(field.name, kinds[0], field.default, spec)
    return out


def check_setting(item: Setting, value) -> None:
    """Raise ``EMOInputError`` naming the setting when ``value`` is not accepted by its spec."""
    spec, name = item.spec, item.name
    if value is None and item.default is None:
        return
    if spec.choices is not None:
        if not isinstance(value, str) or value not in spec.choices:
            allowed = tuple(spec.choices) + ((None,) if item.default is None else ())
            raise EMOInputError(f"{name} must be one of {allowed}, got {value!r}")
        return
    if item.kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and _in_range(spec, value)
        if ok and isinstance(spec.step, int) and spec.step > 1:
            ok = (value - spec.minimum) % spec.step == 0
        if not ok:
            raise EMOInputError(f"{name} must be an integer {_bounds(spec)}, got {value!r}")
    elif item.kind is float:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value) and _in_range(spec, value))
        if not ok:
            raise EMOInputError(f"{name} must be a number {_bounds(spec)}, got {value!r}")
    elif not isinstance(value, item.kind):
        raise EMOInputError(f"{name} must be a {item.kind.__name__}, got {value!r}")


def _bounds(spec: SettingSpec) -> str:
    """``"between 64 and 2048, a multiple of 64"`` (what an error message states)."""
    low, high = (f"{v:g}" if isinstance(v, float) else str(v)
                 for v in (spec.minimum, spec.maximum))
    text = f"between {low} and {high}" if spec.minimum is not None else f"up to {high}"
    if isinstance(spec.step, int) and spec.step > 1:
        text += f", a multiple of {spec.step}"
    return text


def _in_range(spec: SettingSpec, value) -> bool:
    low = -math.inf if spec.minimum is None else spec.minimum
    high = math.inf if spec.maximum is None else spec.maximum
    return low <= value <= high
