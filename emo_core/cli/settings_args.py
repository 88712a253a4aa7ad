"""``generate`` options built from the generation settings' field metadata.

One option per :class:`~emo_core.pipeline.settings.GenerationSettings` field, ``--field-name``,
with the field's type, default, choices and help; the accepted range is appended to the help
(argparse has no range of its own; :meth:`GenerationSettings.validate` enforces it with a message
naming the field). Nothing here states a default, range or help text of its own.
"""

from __future__ import annotations

import argparse

from ..pipeline.settings import SETTINGS, GenerationSettings


def option_name(name: str) -> str:
    """``guidance_reference`` -> ``--guidance-reference``."""
    return "--" + name.replace("_", "-")


def setting_help(name: str) -> str:
    """The field's help + its range and what an unset value means (argparse-escaped)."""
    spec = SETTINGS[name].spec
    parts = [spec.help]
    if spec.range_text:
        parts.append(spec.range_text)
    text = "; ".join(parts)
    if spec.unset:
        text += f" (default: {spec.unset})"
    return text.replace("%", "%%")


def add_setting_argument(parser, name: str, **overrides) -> argparse.Action:
    """``--name`` for one settings field; ``overrides`` replace argparse keywords (a command
    whose own default differs, e.g. demo's smaller size, passes ``default=`` and ``help=``)."""
    item = SETTINGS[name]
    kwargs = dict(type=item.kind, default=item.default, help=setting_help(name))
    if item.kind is bool:  # a switch: --name turns on what defaults to off
        if item.default is not False:
            raise TypeError(f"setting {name}: a bool setting must default to False (a switch)")
        kwargs.pop("type")
        kwargs.update(action="store_true")
    if item.spec.choices is not None:
        kwargs.update(choices=tuple(item.spec.choices))
    kwargs.update(overrides)
    return parser.add_argument(option_name(name), dest=name, **kwargs)


def add_settings_arguments(parser) -> None:
    """Every settings field as an option, in field order."""
    for name in SETTINGS:
        add_setting_argument(parser, name)


def settings_from_args(args) -> GenerationSettings:
    """The settings the parsed options give (not validated: preflight does that). ``--preset`` is
    applied where the checkpoint's family resolves them (:meth:`GenerationSettings.for_model`)."""
    return GenerationSettings(**{name: getattr(args, name) for name in SETTINGS})
