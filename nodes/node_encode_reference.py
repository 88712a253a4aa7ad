"""Encode Reference: portrait IMAGE -> square crop -> VAE latents (EMO_REFERENCE)."""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

from emo_core.errors import EMOInputError
from emo_core.face.detect import FaceAdvice

from . import comfy_bridge as bridge
from .comfy_bridge import io
from .convert import first_image, uint8_to_image
from .runtime import modules_on_device
from .settings_inputs import check_input, settings_input
from .types import (
    EMOCrop,
    EMOCropType,
    EMOModelsBundle,
    EMOModelsType,
    EMOReference,
    EMOReferenceType,
)

logger = logging.getLogger(__name__)

CROP_OPTIONS = ["face", "center", "pad"]
# What a user can change on this node when no face is found (it has no confidence or mask input).
NODE_ADVICE = FaceAdvice(
    no_face="set crop to center or pad (no detection; then connect a mask_override to Face "
            "Locator Mask), or load a photo where the face is larger and closer to frontal",
    face_index="face_index")


def square_portrait(image: np.ndarray, policy: str, size: int, face_index: int):
    """``image: (H, W, 3)`` uint8 -> (``(size, size, 3)`` uint8, CropBox it was cut from).

    Every policy is an exact CropBox, so Frames to Video can paste frames back: face = the
    framing EMO was trained on, center = the centred square of side min(H, W), pad = the square
    of side max(H, W) around the image, the margins white (the RGBA background of emo_core).
    """
    from emo_core.face.crop import CropBox, crop_image

    height, width = image.shape[:2]
    if policy == "face":
        from emo_core.face.crop import face_crop_box
        from emo_core.face.detect import find_face

        face = find_face(image, bridge.mediapipe_dir(), face_index=face_index,
                         advice=NODE_ADVICE)
        box = face_crop_box(face, image.shape[:2], out_size=size)
        return crop_image(image, box), box
    if policy == "center":
        side = min(height, width)
        box = CropBox((width - side) // 2, (height - side) // 2, side, size)
        return crop_image(image, box), box
    if policy == "pad":
        side = max(height, width)
        box = CropBox(-((side - width) // 2), -((side - height) // 2), side, size)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(Image.fromarray(image), (-box.x0, -box.y0))
        # np.array, not asarray: PIL's buffer is read-only, and torch warns when wrapping it.
        return np.array(canvas.resize((size, size), Image.Resampling.LANCZOS)), box
    raise EMOInputError(f"crop must be one of {CROP_OPTIONS}, got {policy!r}")


def encode_with_core_vae(vae, portrait: np.ndarray, latent_format):
    """ComfyUI VAE: IMAGE in, VAE-space latents out -> ``EncodedReference`` (model space)."""
    from emo_core.pipeline.reference import EncodedReference

    latents = vae.encode(uint8_to_image(portrait)[..., :3])
    return EncodedReference(latents=latent_format.process_in(latents.float()), image=portrait)


def _family_conditions(family, portrait: np.ndarray, face_analysis: str | None):
    """The family's per-video conditions of the crop (Hallo: face embedding from
    models/insightface + region masks from MediaPipe landmarks; EMO: None)."""
    folders = {}
    if "face_analysis" in family.reference_models:
        folders["face_analysis"] = bridge.face_analysis_dir(
            face_analysis or bridge.FACE_ANALYSIS_AUTO)
    if "mediapipe" in family.reference_models:
        folders["mediapipe"] = bridge.mediapipe_dir("face_landmarker.task")
    return family.reference_conditions(portrait, **folders)


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
                settings_input(
                    "size", note="The output video side: smaller is faster but blurrier, "
                                 "larger costs memory quadratically."),
                io.Int.Input(
                    "face_index", default=0, min=0, max=31,
                    tooltip="Which face to crop when there are several, counted left to right "
                            "(face crop only)."),
                io.Combo.Input(
                    "face_analysis", options=bridge.list_face_analysis(),
                    default=bridge.FACE_ANALYSIS_AUTO, optional=True,
                    tooltip="Hallo checkpoints only (EMO weights ignore it): insightface models "
                            "folder from models/insightface for the face identity embedding "
                            "(Hallo's face_analysis/models). auto: the first folder there with "
                            "a detector and a recognizer."),
            ],
            outputs=[
                EMOReferenceType.Output(display_name="reference"),
                io.Image.Output(display_name="portrait",
                                tooltip="The square crop used (feed it to Face Locator Mask)."),
                EMOCropType.Output(display_name="crop_box",
                                   tooltip="Where the square lies in the input image: connect "
                                           "it and that image to Frames to Video to paste the "
                                           "talking face back into the full picture."),
            ],
        )

    @classmethod
    def execute(cls, emo_models: EMOModelsBundle, image, crop, size, face_index,
                face_analysis=bridge.FACE_ANALYSIS_AUTO) -> io.NodeOutput:
        check_input("size", size)  # the settings field's range and multiple of 64
        progress = bridge.ProgressReporter(2)  # detection + crop, VAE encode
        progress(0, 2)  # shows the bar and answers an interrupt before any work
        source = first_image(image, "image")
        portrait, box = square_portrait(source, crop, size, face_index)
        progress(1, 2)
        if emo_models.core_vae is not None:
            encoded = encode_with_core_vae(emo_models.core_vae, portrait,
                                           emo_models.family.latent_format)
        else:
            from emo_core.pipeline.reference import encode_reference

            with modules_on_device(emo_models, emo_models.models.vae):
                encoded = encode_reference(emo_models.models, portrait, emo_models.device,
                                           emo_models.dtype)
        encoded = type(encoded)(latents=encoded.latents.detach().to("cpu", torch.float32),
                                image=encoded.image)
        conditions = _family_conditions(emo_models.family, portrait, face_analysis)
        progress(2, 2)
        logger.info("reference %s cropped to %d px, latents %s", crop, size,
                    tuple(encoded.latents.shape))
        return io.NodeOutput(EMOReference(encoded=encoded, crop_policy=crop, conditions=conditions),
                             uint8_to_image(portrait), EMOCrop(box, source.shape[:2]))
