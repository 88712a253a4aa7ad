"""Node widgets built from the generation settings' field metadata: the EMO Sampler's, and the
fps / size / decode_batch inputs of Wav2Vec Audio Features, Encode Reference and Frames to Video.

Each widget takes its default, range, step, choices and tooltip from the
:class:`~emo_core.pipeline.settings.GenerationSettings` field of the same name
(``emo_core/pipeline/setting_spec.py``); nothing here states one of its own. The nodes keep only
their widget order (saved workflows store widget values by position), a note on what the value
means on that node, and ComfyUI-only options (:data:`WIDGET_EXTRAS`).

A field whose default is ``None`` (``motion_frames``: the checkpoint's own count) becomes an INT
widget one below its minimum: ``-1`` means unset, what ComfyUI nodes do for "auto" numbers.
"""

from __future__ import annotations

from emo_core.pipeline.setting_spec import check_setting
from emo_core.pipeline.settings import SETTINGS

from .comfy_bridge import io

# ComfyUI-only widget options, by field name.
WIDGET_EXTRAS = {
    "seed": {"control_after_generate": True},
    # added after workflows were shared: optional, so an API prompt saved without them still
    # validates (absent = the field's default)
    **{name: {"optional": True}
       for name in ("guidance_start", "guidance_end", "guidance_refresh", "compile", "preset")},
}


def tooltip(name: str, note: str | None = None) -> str:
    """The field's help as a sentence, with what the unset value means and the node's ``note``."""
    item = SETTINGS[name]
    text = item.spec.help[0].upper() + item.spec.help[1:] + "."
    if item.default is None:
        text += f" {unset_value(name)} = {item.spec.unset}."
    return f"{text} {note}" if note else text


def unset_value(name: str) -> int:
    """The widget value standing for ``None`` (one below the field's minimum)."""
    return SETTINGS[name].spec.minimum - 1


def settings_input(name: str, note: str | None = None) -> io.Input:
    """One widget for settings field ``name`` (the EMO Sampler's, or another node's input of the
    same meaning, e.g. the fps of Wav2Vec Audio Features); ``note``: what it means on that node,
    appended to the tooltip."""
    item = SETTINGS[name]
    spec, extras = item.spec, WIDGET_EXTRAS.get(name, {})
    if spec.choices is not None:
        return io.Combo.Input(name, options=list(spec.choices), default=item.default,
                              tooltip=tooltip(name, note), **extras)
    if item.kind is bool:
        return io.Boolean.Input(name, default=item.default, tooltip=tooltip(name, note), **extras)
    default = unset_value(name) if item.default is None else item.default
    low = unset_value(name) if item.default is None else spec.minimum
    widget = {int: io.Int, float: io.Float}[item.kind]
    numbers = {"step": spec.step} if spec.step is not None else {}
    return widget.Input(name, default=default, min=low, max=spec.maximum,
                        tooltip=tooltip(name, note), **numbers, **extras)


def settings_from_inputs(values: dict) -> dict:
    """Widget values -> GenerationSettings keywords (the unset value back to ``None``)."""
    out = dict(values)
    for name, value in values.items():
        if name in SETTINGS and SETTINGS[name].default is None and value == unset_value(name):
            out[name] = None
    return out


def check_input(name: str, value) -> None:
    """Raise ``EMOInputError`` when a node input of settings field ``name`` is out of its range
    (ComfyUI checks min/max at queue time, not the step of an INT)."""
    check_setting(SETTINGS[name], value)
