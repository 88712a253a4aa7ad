"""Procedural talking-head clips: a cartoon identity speaking synthetic speech while its head
rolls at a known speed. Everything is drawn from a seed, so train / held-out splits are seed
ranges (identities and audio never overlap between them)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .faces import Identity, random_identity, render_face
from .speech import SAMPLE_RATE, frame_envelope, synthetic_speech

MAX_ANGLE = 18.0  # degrees of roll either side of upright


@dataclass(frozen=True)
class Clip:
    """``frames: (F, S, S, 3)`` uint8, ``waveform: (T,)`` float32 16 kHz, ``opening / angle /
    speed: (F,)``, ``boxes: (F, 4)`` x, y, w, h pixels, ``identity``."""

    frames: np.ndarray
    waveform: np.ndarray
    opening: np.ndarray
    angle: np.ndarray
    speed: np.ndarray
    boxes: np.ndarray
    identity: Identity


def head_angles(rng: np.random.Generator, num_frames: int, speed: float) -> np.ndarray:
    """``(F,)`` roll angles moving ``speed`` deg/frame, bouncing between +-MAX_ANGLE."""
    angle = rng.uniform(-MAX_ANGLE, MAX_ANGLE)
    direction = rng.choice([-1.0, 1.0])
    angles = np.empty(num_frames)
    for i in range(num_frames):
        angles[i] = angle
        angle += direction * speed
        if abs(angle) > MAX_ANGLE:
            angle = np.sign(angle) * 2 * MAX_ANGLE - angle
            direction = -direction
    return angles


def angle_speeds(angles: np.ndarray) -> np.ndarray:
    """``(F,)`` |delta angle| per frame; frame 0 takes frame 1's (as the head-pose front-end)."""
    speeds = np.zeros_like(angles)
    speeds[1:] = np.abs(np.diff(angles))
    if len(angles) > 1:
        speeds[0] = speeds[1]
    return speeds


def face_box(identity: Identity, size: int) -> np.ndarray:
    """x, y, w, h of the head (hair included) at any roll up to MAX_ANGLE (a generous box)."""
    radius = max(identity.half_width * 1.12, identity.half_height * 1.08) * size
    cx, cy = 0.5 * size, 0.52 * size
    return np.array([cx - radius, cy - radius, 2 * radius, 2 * radius], dtype=np.float32)


def make_clip(identity_seed: int, audio_seed: int, num_frames: int, speed: float,
              size: int = 64, fps: float = 25.0, identity: Identity | None = None) -> Clip:
    """Render one clip; the mouth opening is the frame envelope scaled to the clip's maximum."""
    identity = identity or random_identity(np.random.default_rng(identity_seed))
    rng = np.random.default_rng(audio_seed)
    waveform, envelope = synthetic_speech(rng, num_frames / fps)
    per_frame = frame_envelope(envelope, num_frames, fps)
    opening = per_frame / max(per_frame.max(), 1e-6)
    angles = head_angles(rng, num_frames, speed)
    frames = np.stack([render_face(identity, o, a, size)
                       for o, a in zip(opening, angles, strict=True)])
    boxes = np.repeat(face_box(identity, size)[None], num_frames, axis=0)
    return Clip(frames=frames, waveform=waveform, opening=opening, angle=angles,
                speed=angle_speeds(angles).astype(np.float32), boxes=boxes, identity=identity)


__all__ = ["Clip", "SAMPLE_RATE", "angle_speeds", "face_box", "head_angles", "make_clip"]
