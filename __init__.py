"""EMO Portrait: ComfyUI entry point (V3 ``comfy_entrypoint``).

ComfyUI imports this file as a package. The pack folder is put on ``sys.path`` so that
``import emo_core`` resolves to one module for the nodes, the CLI and the tests. The nodes are
imported only when ComfyUI calls ``comfy_entrypoint``, so importing this package outside ComfyUI
(tests, tools) needs no ComfyUI. ``NODE_CLASS_MAPPINGS`` is deliberately absent: ComfyUI ignores
``comfy_entrypoint`` in a pack that defines it.
"""

import os
import sys

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
if _PACK_DIR not in sys.path:
    # Appended, not prepended: the pack's "nodes" folder must never shadow ComfyUI's nodes.py.
    sys.path.append(_PACK_DIR)


async def comfy_entrypoint():
    # Relative import: the pack's folder "nodes" must not shadow ComfyUI's top-level nodes.py.
    from .nodes.extension import comfy_entrypoint as entrypoint

    return await entrypoint()
