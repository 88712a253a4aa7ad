"""Moving the EMO modules onto the run device for one node, and back when the policy says so."""

from __future__ import annotations

import contextlib
import logging

import torch

from . import comfy_bridge as bridge
from .types import EMOModelsBundle

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def modules_on_device(bundle: EMOModelsBundle, *modules):
    """Put ``modules`` on ``bundle.device`` (freeing ComfyUI's models first); offload afterwards.

    With ``bundle.offload`` the modules go back to ComfyUI's offload device even when the node
    fails or is interrupted, so a cancelled run does not leave gigabytes on the GPU.
    """
    modules = [m for m in modules if m is not None]
    bridge.free_memory_for(modules, bundle.device)
    for module in modules:
        # nn.Module.to, not diffusers' ModelMixin.to: the latter logs a "should be kept in
        # float32: []" warning on every dtype argument, even when no module needs fp32.
        torch.nn.Module.to(module, device=bundle.device, dtype=bundle.dtype)
    try:
        yield
    finally:
        if bundle.offload and bundle.device.type != "cpu":
            target = bridge.offload_device()
            for module in modules:
                module.to(target)
            bridge.release_cache()
            logger.debug("offloaded %d EMO modules to %s", len(modules), target)
