"""Speed Embedding: head-rotation speed per frame (constant, keyframes or measured) -> EMO_SPEED."""

from __future__ import annotations

import logging

import numpy as np

from emo_core.errors import EMOInputError

from . import comfy_bridge as bridge
from .comfy_bridge import io
from .convert import image_frames
from .types import EMOSpeed, EMOSpeedType

logger = logging.getLogger(__name__)

MODES = ["constant", "keyframes", "driving video"]
LANDMARKER = "face_landmarker.task"


class EMOSpeedEmbedding(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EMOSpeedEmbedding",
            display_name="Speed Embedding",
            category="EMO",
            description="How fast the head turns, in degrees per frame, for every video frame.",
            inputs=[
                io.Combo.Input(
                    "mode", options=MODES, default="constant",
                    tooltip="constant: one speed for the whole video. keyframes: speeds at given "
                            "times, interpolated. driving video: measured from a video's head "
                            "motion with MediaPipe (needs face_landmarker.task)."),
                io.Float.Input(
                    "speed", default=2.0, min=0.0, max=30.0, step=0.1,
                    tooltip="Constant head rotation speed in degrees per frame. 0 = still head; "
                            "1-3 natural talking; high values make jittery motion."),
                io.String.Input(
                    "keyframes", default="0:1.5, 2:3, 4:1.5", multiline=False,
                    tooltip="keyframes mode: 'seconds:deg_per_frame, ...' e.g. '0:1, 3:4'; "
                            "linear between keys, held after the last."),
                io.Int.Input(
                    "frame_count", default=0, min=0, max=1_000_000,
                    tooltip="Frames the curve spans. 0 = follow the audio (recommended); "
                            "another value is checked against the audio in EMO Sampler."),
                io.Image.Input(
                    "driving_video", optional=True,
                    tooltip="driving video mode: frames whose head motion is copied; its curve is "
                            "stretched over the output length. Use the same fps as the output."),
            ],
            outputs=[EMOSpeedType.Output(display_name="emo_speed")],
        )

    @classmethod
    def validate_inputs(cls, mode, keyframes):
        # keyframes is a widget (never linked here), so a typo is caught before anything runs.
        if mode == "keyframes" and keyframes is not None:
            from emo_core.speed import parse_keyframes

            try:
                parse_keyframes(keyframes)
            except (EMOInputError, ValueError) as error:
                return f"keyframes {keyframes!r}: {error}"
        return True

    @classmethod
    def execute(cls, mode, speed, keyframes, frame_count, driving_video=None) -> io.NodeOutput:
        if mode == "constant":
            return io.NodeOutput(EMOSpeed(mode="constant", value=float(speed),
                                          num_frames=frame_count))
        if mode == "keyframes":
            return io.NodeOutput(EMOSpeed(mode="keyframes", keyframes=keyframes,
                                          num_frames=frame_count))
        if driving_video is None:
            raise EMOInputError("mode is 'driving video' but driving_video is not connected; "
                                "connect an IMAGE batch (e.g. from a video loader) or pick "
                                "constant/keyframes")
        from emo_core.face.head_pose import head_rotation_speeds

        frames = np.stack(image_frames(driving_video, "driving_video"))
        measured = np.asarray(
            head_rotation_speeds(frames, bridge.mediapipe_dir(LANDMARKER), smooth=2),
            dtype=np.float32)
        logger.info("driving video: %d frames, mean speed %.2f deg/frame", measured.size,
                    float(measured.mean()) if measured.size else 0.0)
        return io.NodeOutput(EMOSpeed(mode="measured", measured=measured,
                                      num_frames=frame_count))
