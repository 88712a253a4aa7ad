"""Shared base for EMO's diffusers models whose config key and submodule share a name."""

from __future__ import annotations

from typing import Any


class SubmodulesFirst:
    """Resolve ``self.unet`` to the submodule, not the ``unet`` config dict.

    ``ReferenceNet(unet: dict)`` stores its UNet config under the constructor argument ``unet``
    and the built model as ``self.unet``; diffusers' ``ModelMixin.__getattr__`` would otherwise
    answer the (deprecated) config-attribute lookup first and return the dict.
    """

    def __getattr__(self, name: str) -> Any:
        modules = self.__dict__.get("_modules")
        if modules is not None and name in modules:
            return modules[name]
        return super().__getattr__(name)
