"""Face Locator Mask: portrait IMAGE (or a MASK override) -> union face-box MASK + BBOX."""

from __future__ import annotations

import logging

import numpy as np
import torch

from emo_core.errors import EMOInputError
from emo_core.face.detect import FaceAdvice
from emo_core.face.mask import DEFAULT_MASK_EXPAND, MASK_EXPAND_HELP, MAX_MASK_EXPAND

from . import comfy_bridge as bridge
from .comfy_bridge import io
from .convert import image_frames

logger = logging.getLogger(__name__)

# What a user can change on this node when no face is found.
NODE_ADVICE = FaceAdvice(
    no_face="connect a hand-painted mask to mask_override (no detection then), or feed a "
            "portrait where the face is larger and closer to frontal",
    face_index="face_index")


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``mask: (H, W)`` -> bounding box ``(x, y, width, height)`` of values > 0.5 (pixels)."""
    ys, xs = np.nonzero(mask > 0.5)
    if xs.size == 0:
        raise EMOInputError(
            "mask_override is empty (no pixel above 0.5); paint the area the face may move in")
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


class EMOFaceLocatorMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EMOFaceLocatorMask",
            display_name="Face Locator Mask",
            category="EMO",
            description="Detects the face(s) with MediaPipe and returns the union box as a mask: "
                        "the region where the generated face may move.",
            inputs=[
                io.Image.Input(
                    "image", tooltip="The square portrait from Encode Reference (same size as "
                                     "the video). A batch gives the union over all images."),
                io.Float.Input(
                    "expand_ratio", default=DEFAULT_MASK_EXPAND, min=0.0, max=MAX_MASK_EXPAND,
                    step=0.05, tooltip=MASK_EXPAND_HELP),
                io.Int.Input(
                    "face_index", default=0, min=0, max=31,
                    tooltip="Which face to use when several are found, counted left to right."),
                io.Mask.Input(
                    "mask_override", optional=True,
                    tooltip="Optional hand-painted mask used instead of detection (no MediaPipe "
                            "needed). Must cover the face."),
            ],
            outputs=[
                io.Mask.Output(display_name="face_mask"),
                io.BBOX.Output(display_name="bbox",
                               tooltip="Union box as [(x, y, width, height)] in pixels."),
            ],
        )

    @classmethod
    def execute(cls, image, expand_ratio, face_index, mask_override=None) -> io.NodeOutput:
        if mask_override is not None:
            override = torch.as_tensor(mask_override).float().cpu()
            override = override[0] if override.ndim == 3 else override
            box = mask_box(override.numpy())
            return io.NodeOutput(override.clamp(0, 1)[None], [box])
        from emo_core.face.mask import face_locator_mask

        frames = np.stack(image_frames(image, "image"))
        face = face_locator_mask(frames, bridge.mediapipe_dir(), expand_ratio=expand_ratio,
                                 face_index=face_index, advice=NODE_ADVICE)
        mask = torch.from_numpy(np.asarray(face.image_mask, dtype=np.float32))[None]
        box = mask_box(face.image_mask)
        logger.info("face locator box %s on %s", box, tuple(frames.shape[1:3]))
        return io.NodeOutput(mask, [box])
