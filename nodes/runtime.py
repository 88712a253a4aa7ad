"""Loading the EMO networks a node needs through ComfyUI's memory management, and unloading
them again afterwards when the device policy says so.

There is no model cache of the pack's own: the only strong references to the networks are
ComfyUI's node-output cache (the ``EMO_MODELS`` bundle, as for a core MODEL) and the patchers in
that bundle. ComfyUI's loaded-model list holds its patchers weakly, so "Unload Models" / POST
``/free`` (``unload_all_models``) moves the weights back to the offload device and drops them
from the list, and the next node loads them again; "Free model and node cache" also clears the
node-output cache, which frees the weights themselves.
"""

from __future__ import annotations

import contextlib
import logging

from . import comfy_bridge as bridge
from .types import EMOModelsBundle

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def modules_on_device(bundle: EMOModelsBundle, *modules):
    """Load the patchers holding ``modules`` with ``load_models_gpu`` (ComfyUI unloads its other
    models first when memory is short); unload them afterwards with ``bundle.offload``.

    ``modules``: ``bundle.models`` (every sampler network: Backbone, ReferenceNet, VAE) or a
    part of it (``bundle.models.vae``) or ``bundle.wav2vec``. Inside, the modules sit on
    ``bundle.device``, the patchers' load device. With ``bundle.offload`` they are unloaded even
    when the node fails or is interrupted, so a cancelled run does not leave them on the GPU.
    """
    modules = [m for m in modules if m is not None]
    patchers = bundle.patchers.for_modules(bundle.models, modules)
    bridge.load_patchers(patchers)
    try:
        yield
    finally:
        if bundle.offload:
            bridge.unload_patchers(patchers)
            logger.debug("unloaded %d EMO model patchers", len(patchers))


def load_again(bundle: EMOModelsBundle, *modules) -> None:
    """Inside :func:`modules_on_device`, after a core model ran (the core VAE decoding a clip in
    the Sampler): loading it may have made ComfyUI unload ``modules``' patchers to make room, so
    they are loaded again before the next EMO call (a no-op when they are still loaded)."""
    bridge.load_patchers(bundle.patchers.for_modules(bundle.models, modules))
