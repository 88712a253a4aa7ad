"""``torch.compile`` of an EMO network's UNet call, one compiled entry per static call layout.

The core is traceable as ONE graph (no breaks: conditioning in arguments, static row runs).
What still changes between calls of a generation is the *layout*: the guidance rows
(u / r / ra -> batch and row runs), whether motion features exist (first clip) and the bank.
Each layout is a different graph. Under one compiled function every new layout would be a guard
failure and a recompile of the same code object (and dynamo's recompile limit of 8 would
eventually fall back to eager). The layout is known in Python before the call, so instead each
layout gets its own entry: a fresh copy of a two-line trampoline's code object compiled by
``torch.compile``, looked up by the layout's signature (shapes, dtypes, strides and the
conditioning's static fields). Steps and clips of one layout reuse its graph; a new guidance
mode compiles its own graph once; nothing recompiles.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable

import torch


def _trampoline(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def _fresh_function(fn: Callable) -> Callable:
    """A new function with a copy of ``fn``'s code object (dynamo caches per code object)."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__,
                              fn.__defaults__, fn.__closure__)


def signature(value):
    """A hashable description of everything dynamo guards on in ``value`` (tensors: shape,
    stride, dtype, device, requires_grad; containers and dataclasses recursively)."""
    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape), value.stride(), value.dtype, str(value.device),
                value.requires_grad)
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, *(signature(v) for v in value))
    if isinstance(value, dict):
        return ("dict", *((k, signature(v)) for k, v in sorted(value.items())))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__,
                *((f.name, signature(getattr(value, f.name))) for f in dataclasses.fields(value)))
    if isinstance(value, torch.nn.Module):
        return ("module", id(value))
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot key a compiled call on {type(value).__name__}")


class CompiledCalls:
    """``calls(fn, *args, **kwargs)``: ``fn(*args, **kwargs)`` through ``torch.compile``, one
    compiled entry per layout ``signature``; ``compile_kwargs`` go to ``torch.compile``."""

    def __init__(self, **compile_kwargs):
        self.compile_kwargs = {"dynamic": False, **compile_kwargs}
        self.entries: dict = {}

    def __call__(self, fn, *args, **kwargs):
        key = signature((fn, args, kwargs))
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = torch.compile(_fresh_function(_trampoline),
                                                      **self.compile_kwargs)
        return entry(fn, *args, **kwargs)

    def code_objects(self) -> list[types.CodeType]:
        """The code object of every entry (for counting cache entries = compilations)."""
        return [entry._torchdynamo_orig_callable.__code__ for entry in self.entries.values()]


class CompilableUNet:
    """Mixin for ``EMOBackbone`` / ``ReferenceNet``: ``compile_unet(**kwargs)`` routes the UNet
    call through ``CompiledCalls``; ``compile_unet(None)`` turns it off."""

    def compile_unet(self, enable: bool = True, **compile_kwargs) -> None:
        self.__dict__["compiled_calls"] = CompiledCalls(**compile_kwargs) if enable else None

    def _call_unet(self, *args, **kwargs):
        calls = self.__dict__.get("compiled_calls")
        if calls is None:
            return self.unet(*args, **kwargs)
        return calls(self.unet, *args, **kwargs)
