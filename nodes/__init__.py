"""ComfyUI V3 nodes of EMO Portrait.

Only ``comfy_bridge`` imports ComfyUI; the node modules convert core types and call ``emo_core``.
Import ``nodes.extension`` (inside ComfyUI) for the extension and its ``comfy_entrypoint``.
"""
