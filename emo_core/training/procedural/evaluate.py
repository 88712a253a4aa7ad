"""Measure what a trained EMO learned, on held-out identities and held-out audio.

Generation goes through the real :class:`~emo_core.pipeline.pipeline.EMOPipeline` (the same
sampler users run); the frames are then measured with the procedural face measurements only.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .clips import SAMPLE_RATE, make_clip
from .faces import measure_angle, measure_colours, measure_mouth, render_face
from .talking_cartoon import generate_talking_cartoon

logger = logging.getLogger(__name__)


def correlation(a, b) -> float:
    """Pearson r of two series; 0 when either is constant (no movement to follow)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


class Evaluator:
    """Generates held-out videos with ``pipeline`` and measures lip sync, identity and speed."""

    def __init__(self, pipeline, wav2vec, settings, size: int = 64):
        self.pipeline = pipeline
        self.wav2vec = wav2vec
        self.settings = settings
        self.size = size

    def generate(self, clip, speed, settings=None) -> np.ndarray:
        """``clip``'s audio + first frame as reference -> ``(F, S, S, 3)`` uint8 frames."""
        return generate_talking_cartoon(self.pipeline, self.wav2vec, clip.identity,
                                        torch.from_numpy(clip.waveform), SAMPLE_RATE, speed,
                                        settings or self.settings, self.size)

    def lip_sync(self, seeds, frames: int) -> dict:
        """Correlation of measured mouth opening with the audio envelope, with and without audio."""
        with_audio, without_audio, gt, ident = [], [], [], []
        for identity_seed, audio_seed in seeds:
            clip = make_clip(identity_seed, audio_seed, frames, 0.0, self.size)
            video = self.generate(clip, 0.0)
            silent = self.generate(clip, 0.0, self.settings.replace(guidance_audio=0.0))
            with_audio.append(correlation(measure_mouth(video), clip.opening))
            without_audio.append(correlation(measure_mouth(silent), clip.opening))
            gt.append(correlation(measure_mouth(clip.frames), clip.opening))
            ident.append(self._identity_errors(video, clip, identity_seed))
            logger.info("lip sync identity %d: r = %.3f (audio dropped %.3f)", identity_seed,
                        with_audio[-1], without_audio[-1])
        errors = np.array(ident)
        return {
            "lip_sync_corr": float(np.mean(with_audio)),
            "lip_sync_corr_per_sample": with_audio,
            "lip_sync_corr_audio_dropped": float(np.mean(without_audio)),
            "lip_sync_corr_audio_dropped_per_sample": without_audio,
            "lip_sync_corr_ground_truth_render": float(np.mean(gt)),
            "identity_error_own_reference": float(errors[:, 0].mean()),
            "identity_error_other_identity": float(errors[:, 1].mean()),
        }

    def _identity_errors(self, video, clip, identity_seed) -> tuple[float, float]:
        """Mean RGB error (0..255) of skin + hair colours vs the own reference and vs another
        held-out identity's reference."""
        measured = measure_colours(video).mean(axis=0)
        own = self._reference_colours(clip.identity)
        other_clip = make_clip(identity_seed + 7777, 0, 1, 0.0, self.size)
        other = measure_colours(other_clip.frames)[0]
        return float(np.abs(measured - own).mean()), float(np.abs(measured - other).mean())

    def _reference_colours(self, identity) -> np.ndarray:
        """Skin + hair colours of ``identity``'s upright reference render, ``(6,)``."""
        return measure_colours(render_face(identity, 0.0, 0.0, self.size)[None])[0]

    def speed_control(self, seeds, speeds, frames: int) -> dict:
        """Measured head speed (mean |delta angle| per frame) against the requested speed."""
        measured = []
        for speed in speeds:
            values = []
            for identity_seed, audio_seed in seeds:
                clip = make_clip(identity_seed, audio_seed, frames, 0.0, self.size)
                video = self.generate(clip, float(speed))
                values.append(float(np.abs(np.diff(measure_angle(video))).mean()))
            measured.append(float(np.mean(values)))
            logger.info("speed %.1f deg/frame requested -> %.2f measured", speed, measured[-1])
        slope = float(np.polyfit(speeds, measured, 1)[0])
        monotonic = bool(np.all(np.diff(measured) > 0))
        return {"speed_requested": [float(s) for s in speeds], "speed_measured": measured,
                "speed_slope": slope, "speed_corr": correlation(speeds, measured),
                "speed_monotonic": monotonic}

    def long_video(self, seeds, clips: int) -> tuple[dict, np.ndarray, object]:
        """Identity error per chained clip, averaged over ``seeds`` (identity, audio) pairs; the
        drift ratio compares the last clip with the first. Returns the figures and the first
        sample's video + clip (for the mp4)."""
        frames_per_clip = self.settings.frames_per_clip
        curves, lip_sync, first_sample = [], [], None
        for identity_seed, audio_seed in seeds:
            clip = make_clip(identity_seed, audio_seed, clips * frames_per_clip, 0.0, self.size)
            video = self.generate(clip, 0.0)
            own = self._reference_colours(clip.identity)
            curves.append([float(np.abs(measure_colours(video[k:k + frames_per_clip]).mean(0)
                                        - own).mean())
                           for k in range(0, clips * frames_per_clip, frames_per_clip)])
            lip_sync.append(correlation(measure_mouth(video), clip.opening))
            first_sample = first_sample or (video, clip)
            logger.info("long video identity %d: error per clip %s", identity_seed,
                        " ".join(f"{e:.1f}" for e in curves[-1]))
        curve = np.mean(curves, axis=0)
        return {"long_video_clips": clips, "long_video_samples": len(curves),
                "identity_error_per_clip": [float(e) for e in curve],
                "identity_error_per_clip_per_sample": curves,
                "identity_error_first_clip": float(curve[0]),
                "identity_error_last_clip": float(curve[-1]),
                "long_video_drift_ratio": float(curve[-1] / max(curve[0], 1e-6)),
                "long_video_lip_sync_corr": float(np.mean(lip_sync))}, *first_sample
