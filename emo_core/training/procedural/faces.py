"""Cartoon faces with a known identity, mouth opening and head roll, and their measurement.

An identity is a handful of numbers (skin / hair / eye colours, face width and height, hair
fringe, eye spacing, mouth width); a frame adds the mouth opening (0..1) and the in-plane head
angle (degrees). Rendering is vectorised numpy with 3x supersampling (anti-aliased edges, so the
VAE and the diffusion model see smooth shapes). ``measure_*`` read the same quantities back from
any frame, generated or rendered, with no access to the renderer's parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

BACKGROUND = np.array([96.0, 136.0, 176.0])  # a light blue no face part uses
MOUTH = np.array([72.0, 14.0, 28.0])
_SUPERSAMPLE = 3
_DARK_LUMA = 75.0  # mouth luma ~34; skin, background and eyes-free region all > 95
# Measurement region of the mouth, as fractions of the image (covers +-20 degrees of roll).
MOUTH_REGION = (0.58, 0.92, 0.25, 0.75)  # top, bottom, left, right


@dataclass(frozen=True)
class Identity:
    """Colours are RGB 0..255; sizes are fractions of the image side."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    eyes: tuple[float, float, float]
    half_width: float
    half_height: float
    fringe: float
    eye_spacing: float
    mouth_width: float

    def vector(self) -> np.ndarray:
        """All identity numbers as one float vector (for nearest-identity checks)."""
        return np.array([v for f in dataclasses.fields(self)
                         for v in np.atleast_1d(getattr(self, f.name))], dtype=np.float64)


def random_identity(rng: np.random.Generator) -> Identity:
    """Skin luma is kept >= ~110 so a dark mouth is always the darkest thing in the lower face."""
    tone = rng.uniform(0, 1)
    skin = np.array([255, 224, 196]) * (1 - tone) + np.array([190, 135, 95]) * tone
    skin = skin + rng.uniform(-12, 12, 3)
    hair = rng.uniform([10, 10, 10], [230, 200, 120])
    eyes = rng.uniform([20, 40, 20], [120, 160, 200])
    return Identity(
        skin=tuple(np.clip(skin, 0, 255)), hair=tuple(hair), eyes=tuple(eyes),
        half_width=rng.uniform(0.25, 0.31), half_height=rng.uniform(0.34, 0.40),
        fringe=rng.uniform(0.25, 0.6), eye_spacing=rng.uniform(0.33, 0.45),
        mouth_width=rng.uniform(0.38, 0.5),
    )


def _ellipse(u, v, cu, cv, ru, rv) -> np.ndarray:
    return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1.0


def render_face(identity: Identity, opening: float, angle: float, size: int = 64) -> np.ndarray:
    """``(size, size, 3)`` uint8: the face rolled by ``angle`` degrees, mouth ``opening`` 0..1."""
    s = size * _SUPERSAMPLE
    grid = (np.arange(s) + 0.5) / s
    y, x = np.meshgrid(grid, grid, indexing="ij")
    centre = (0.5, 0.52)
    theta = np.radians(angle)
    dx, dy = x - centre[0], y - centre[1]
    # Head-local coordinates: rotate the sampling grid by -angle around the head centre.
    u = np.cos(theta) * dx + np.sin(theta) * dy
    v = -np.sin(theta) * dx + np.cos(theta) * dy
    rw, rh = identity.half_width, identity.half_height
    image = np.broadcast_to(BACKGROUND, (s, s, 3)).copy()
    hair = _ellipse(u, v, 0, -0.03, rw * 1.12, rh * 1.08) & (v < -rh * (1 - identity.fringe))
    image[_ellipse(u, v, 0, 0, rw, rh)] = identity.skin
    image[hair] = identity.hair
    for side in (-1, 1):
        eye = _ellipse(u, v, side * identity.eye_spacing * rw, -0.22 * rh, 0.15 * rw, 0.1 * rh)
        image[eye] = identity.eyes
    half_open = (0.05 + 0.3 * float(np.clip(opening, 0, 1))) * rh * 0.5
    mouth = _ellipse(u, v, 0, 0.5 * rh, identity.mouth_width * rw, half_open)
    image[mouth] = MOUTH
    image = image.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _luma(frames: np.ndarray) -> np.ndarray:
    return frames[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def measure_mouth(frames: np.ndarray) -> np.ndarray:
    """``(F, S, S, 3)`` uint8 -> ``(F,)`` dark area (fraction of the mouth region).

    The mouth is the only dark part of the lower face, so its area follows the opening.
    """
    frames = np.asarray(frames)
    size = frames.shape[1]
    top, bottom, left, right = (int(round(f * size)) for f in MOUTH_REGION)
    region = _luma(frames[:, top:bottom, left:right])
    return (region < _DARK_LUMA).mean(axis=(1, 2))


def measure_angle(frames: np.ndarray) -> np.ndarray:
    """``(F, S, S, 3)`` -> ``(F,)`` head roll in degrees from the second moments of the head
    (every pixel that differs from the background); 0 = upright."""
    frames = np.asarray(frames).astype(np.float64)
    size = frames.shape[1]
    weight = (np.abs(frames - BACKGROUND).sum(axis=-1) > 60).astype(np.float64)
    grid = np.arange(size) + 0.5
    y, x = np.meshgrid(grid, grid, indexing="ij")
    mass = weight.sum(axis=(1, 2)) + 1e-9
    mx = (weight * x).sum(axis=(1, 2)) / mass
    my = (weight * y).sum(axis=(1, 2)) / mass
    dx, dy = x[None] - mx[:, None, None], y[None] - my[:, None, None]
    mxx = (weight * dx * dx).sum(axis=(1, 2))
    myy = (weight * dy * dy).sum(axis=(1, 2))
    mxy = (weight * dx * dy).sum(axis=(1, 2))
    # Major axis of a tall head is near vertical; its tilt from vertical is the roll.
    return -np.degrees(0.5 * np.arctan2(2 * mxy, myy - mxx))


def measure_colours(frames: np.ndarray) -> np.ndarray:
    """``(F, S, S, 3)`` -> ``(F, 6)``: mean RGB of the face centre (skin) and of the top of the
    head (hair), the two largest identity colours."""
    frames = np.asarray(frames).astype(np.float64)
    size = frames.shape[1]
    cheek = frames[:, int(0.42 * size):int(0.52 * size), int(0.4 * size):int(0.6 * size)]
    crown = frames[:, int(0.18 * size):int(0.24 * size), int(0.42 * size):int(0.58 * size)]
    return np.concatenate([cheek.mean(axis=(1, 2)), crown.mean(axis=(1, 2))], axis=1)
