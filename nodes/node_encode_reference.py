"""Encode Reference: portrait IMAGE -> square crop -> VAE latents (EMO_REFERENCE)."""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image, ImageOps

from emo_core.errors import EMOInputError

from . import comfy_bridge as bridge
from .comfy_bridge import io
from .convert import first_image, uint8_to_image
from .runtime import modules_on_device
from .types import EMOModelsBundle, EMOModelsType, EMOReference, EMOReferenceType

logger = logging.getLogger(__name__)

CROP_OPTIONS = ["face", "center", "pad"]


def square_portrait(image: np.ndarray, policy: str, size: int, face_index: int) -> np.ndarray:
    """``image: (H, W, 3)`` uint8 -> ``(size, size, 3)`` uint8 by the chosen crop policy."""
    if policy == "face":
        from emo_core.face.crop import crop_image, face_crop_box
        from emo_core.face.detect import find_face

        face = find_face(image, bridge.mediapipe_dir(), face_index=face_index)
        return crop_image(image, face_crop_box(face, image.shape[:2], out_size=size))
    picture = Image.fromarray(image)
    if policy == "center":
        picture = ImageOps.fit(picture, (size, size), Image.Resampling.LANCZOS)
    elif policy == "pad":
        # Letterbox on white, the same background emo_core composites RGBA onto.
        picture = ImageOps.pad(picture, (size, size), Image.Resampling.LANCZOS, (255, 255, 255))
    else:
        raise EMOInputError(f"crop must be one of {CROP_OPTIONS}, got {policy!r}")
    # np.array, not asarray: PIL's buffer is read-only, and torch warns when wrapping it.
    return np.array(picture.convert("RGB"))


def encode_with_core_vae(vae, portrait: np.ndarray, scale: float):
    """ComfyUI VAE: IMAGE in, unscaled latents out -> ``EncodedReference`` (scaled latents)."""
    from emo_core.pipeline.reference import EncodedReference

    latents = vae.encode(uint8_to_image(portrait)[..., :3])
    return EncodedReference(latents=latents.float() * scale, image=portrait)


class EMOEncodeReference(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EMOEncodeReference",
            display_name="Encode Reference",
            category="EMO",
            description="Crops the portrait to a square and encodes it with the VAE; ReferenceNet "
                        "reads it once per clip to keep the identity.",
            inputs=[
                EMOModelsType.Input("emo_models", tooltip="Models from Load EMO Models."),
                io.Image.Input(
                    "image", tooltip="Portrait of any size (RGBA or grey accepted; transparency "
                                     "becomes white). Only the first image of a batch is used."),
                io.Combo.Input(
                    "crop", options=CROP_OPTIONS, default="face",
                    tooltip="face: square crop around the detected face (what EMO was trained "
                            "on; fails on images without a face). center: centre square crop. "
                            "pad: whole image letterboxed on white (face may end up small)."),
                io.Int.Input(
                    "size", default=512, min=64, max=1024, step=64,
                    tooltip="Output video side in pixels. 512 is what EMO is trained for; "
                            "smaller is faster but blurrier, larger costs memory quadratically."),
                io.Int.Input(
                    "face_index", default=0, min=0, max=31,
                    tooltip="Which face to crop when there are several, counted left to right "
                            "(face crop only)."),
            ],
            outputs=[
                EMOReferenceType.Output(display_name="reference"),
                io.Image.Output(display_name="portrait",
                                tooltip="The square crop used (feed it to Face Locator Mask)."),
            ],
        )

    @classmethod
    def execute(cls, emo_models: EMOModelsBundle, image, crop, size, face_index) -> io.NodeOutput:
        if size % 64:
            raise EMOInputError(f"size must be a multiple of 64, got {size}")
        portrait = square_portrait(first_image(image, "image"), crop, size, face_index)
        if emo_models.core_vae is not None:
            encoded = encode_with_core_vae(emo_models.core_vae, portrait, emo_models.latent_scale)
        else:
            from emo_core.pipeline.reference import encode_reference

            with modules_on_device(emo_models, emo_models.models.vae):
                encoded = encode_reference(emo_models.models, portrait, emo_models.device,
                                           emo_models.dtype)
        encoded = type(encoded)(latents=encoded.latents.detach().to("cpu", torch.float32),
                                image=encoded.image)
        logger.info("reference %s cropped to %d px, latents %s", crop, size,
                    tuple(encoded.latents.shape))
        return io.NodeOutput(EMOReference(encoded=encoded, crop_policy=crop),
                             uint8_to_image(portrait))
