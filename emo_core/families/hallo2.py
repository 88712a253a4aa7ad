"""The Hallo2 family: a ``convert-hallo`` checkpoint of Hallo2's weights, run as Hallo2's
``scripts/inference_long.py`` runs it (numbers equal Hallo2's own,
``tests/test_hallo2_equivalence.py``).

Hallo2's networks, guidance, scheduler, clip layout and defaults are Hallo's (its model code is
Hallo's byte for byte; ``long.yaml`` repeats ``default.yaml``'s sampling), so this is the Hallo
family with two hooks changed:

* clip chaining: before every clip, the first included, ONE keep mask is drawn from the run's
  generator (``torch.rand(H, W)``, before the clip's noise) and the motion frames are masked
  with it in pixel space before the VAE encodes them (:func:`draw_motion_mask`,
  :func:`keep_mask`, :func:`mask_motion_pixels` below). The first clip's
  motion frames are therefore the MASKED reference, encoded, not the reference latents;
* audio front-end: 60 s pieces, each through wav2vec2 alone (``audio/hallo2_features.py``).

What the checkpoint records (``io/hallo2.py``): ``sampling.variant = "hallo2"``,
``sampling.motion_mask = {"rate", "keep_face"}``, ``sampling.audio_segment_seconds``. Hallo2's
super-resolution stage (``net_g.pth``) is not part of this family.
"""

from __future__ import annotations

import logging

import torch

from .hallo import HalloFamily

logger = logging.getLogger(__name__)

NO_GENERATOR = ("the Hallo2 family draws each clip's motion-frame mask from the run's generator "
                "(before the clip's noise): VideoInputs.generator must be the loop's generator")


class Hallo2Family(HalloFamily):
    name = "hallo2"
    title = "Hallo2"
    audio_front_end = "hallo2"

    # ------------------------------------------------------------------ settings
    @property
    def motion_mask(self) -> tuple[float, bool]:
        """``(mask_rate, keep_face)`` the checkpoint records (Hallo2: 0.25, True)."""
        from ..io.hallo2 import HALLO2_MASK_RATE

        cfg = self.sampling.get("motion_mask") or {}
        return float(cfg.get("rate", HALLO2_MASK_RATE)), bool(cfg.get("keep_face", True))

    @property
    def segment_seconds(self) -> int:
        from ..audio.hallo2_features import SEGMENT_SECONDS

        return int(self.sampling.get("audio_segment_seconds", SEGMENT_SECONDS))

    def declared_defaults(self) -> dict:
        """Hallo's declared values (``pipeline/settings.py`` lists them under "Hallo"): Hallo2's
        long.yaml repeats them, so they are not declared twice; any declared under "Hallo2"
        would win."""
        from ..pipeline.settings import SETTINGS

        own: dict = {}
        for name, item in SETTINGS.items():
            for title in (HalloFamily.title, self.title):  # the later one wins
                if title in item.spec.families:
                    own[name] = item.spec.families[title]
        return own

    def log_defaults(self, checkpoint: str) -> None:
        super().log_defaults(checkpoint)
        rate, keep_face = self.motion_mask
        logger.info("%s is Hallo2: motion frames masked at rate %g%s before encoding, audio in "
                    "%d s pieces; no super-resolution (net_g.pth is not run)", checkpoint, rate,
                    " (face region kept)" if keep_face else "", self.segment_seconds)

    # ------------------------------------------------------------------ inputs
    def audio_features(self, wav2vec, waveform, sample_rate: int, fps: float, *, device=None,
                       progress=None, cancel=None):
        """Hallo2's front-end at the checkpoint's fps: 60 s pieces, each through wav2vec2 alone;
        windows over the concatenation, extended to whole clips (``audio/hallo2_features.py``)."""
        from ..audio.features import AudioFeatures
        from ..audio.hallo2_features import extend_to_clips, hallo2_audio_features
        from ..audio.hallo_features import hallo_audio_windows
        from ..audio.waveform import to_mono_16k

        own, clip = int(self.sampling.get("fps", 25)), int(self.sampling.get("clip_frames", 16))
        if abs(float(fps) - own) > 1e-6:
            logger.warning("Hallo2 checkpoint: audio features at its %d fps, not %g (the video "
                           "runs at %d fps)", own, fps, own)
        wave = to_mono_16k(waveform, sample_rate)
        param = next(wav2vec.parameters())
        features, frames = hallo2_audio_features(
            wav2vec, wave.to(param.device, param.dtype), fps=own, clip_frames=clip,
            seconds=self.segment_seconds)
        windows = hallo_audio_windows(extend_to_clips(features, frames, clip))
        return AudioFeatures(windows=windows, num_frames=frames, fps=float(own),
                             waveform_16k=wave, front_end=self.audio_front_end)

    # ------------------------------------------------------------------ chaining
    def first_motion(self, state, settings):
        """The reference image repeated ``n`` times, masked, encoded -> ``(1, n, 4, h, w)``."""
        from ..pipeline.reference import image_to_tensor

        device, dtype = self.placement
        reference = state.inputs.reference
        pixels = reference.pixels if reference.pixels is not None \
            else image_to_tensor(reference.image)
        pixels = pixels.to(device, dtype).expand(settings.motion_frames, -1, -1, -1)
        return self._masked_motion(state, pixels)

    def next_motion(self, state, latents: torch.Tensor, settings):
        """The clip's last ``n`` frames decoded (clamped to [0, 1]), mapped to [-1, 1], masked,
        encoded -> ``(1, n, 4, h, w)``."""
        from .hallo_parts import decode_frames

        n = settings.motion_frames
        frames = decode_frames(self.models.vae, latents[0, -n:], self.latent_format)
        return self._masked_motion(state, frames * 2 - 1)

    def _masked_motion(self, state, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels (n, 3, H, W)`` in [-1, 1] -> one mask draw from the run's generator (the
        loop makes the next clip's motion after this clip's noise and before the next one's:
        Hallo2's order), masked, encoded latents."""
        from .hallo_parts import encode_pixels

        generator = state.inputs.generator
        if generator is None:
            raise RuntimeError(NO_GENERATOR)
        rate, keep_face = self.motion_mask
        region = state.conditions.face_region
        keep = keep_mask(draw_motion_mask(generator, *pixels.shape[-2:]), region, rate, keep_face)
        return encode_pixels(self.models.vae, mask_motion_pixels(pixels, keep),
                             self.latent_format)[None]


# Hallo2's masking rule (scripts/inference_long.py, use_mask: true). Per clip, the first included:
# 1. rand = torch.rand(H, W) at image resolution (float32, the run's CPU generator), drawn BEFORE
#    the clip's noise; 2. keep = (rand > mask_rate) | face_region != 0 per channel (the face box is
#    always kept; any non-zero face-region value counts); 3. motion = motion * keep: masked pixels
#    become exactly 0, mid-grey in [-1, 1]; one mask for every motion frame and channel; the
#    reference frame itself is never masked. mask_rate 0.25 keeps ~75 % of the non-face pixels.


def draw_motion_mask(generator: torch.Generator, height: int, width: int) -> torch.Tensor:
    """Hallo2's draw for one clip: ``torch.rand(H, W)`` (float32) from ``generator``, before the
    clip's noise. ``(H, W)`` on the generator's device."""
    return torch.rand((height, width), generator=generator, device=generator.device)


def keep_mask(draw: torch.Tensor, face_region: torch.Tensor, mask_rate: float,
              keep_face: bool = True) -> torch.Tensor:
    """``draw (H, W)``, ``face_region (1, 3, H, W)`` (Hallo's, 0/1) -> keep mask ``(3, H, W)``
    bool on ``face_region``'s device: ``draw > mask_rate``, OR the face region per channel."""
    keep = (draw.to(face_region.device) > mask_rate)[None].expand(face_region.shape[1], -1, -1)
    return keep | face_region[0].bool() if keep_face else keep


def mask_motion_pixels(pixels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``pixels: (n, 3, H, W)`` in [-1, 1] x ``keep (3, H, W)`` bool -> masked pixels (0 where
    not kept), same dtype."""
    return pixels * keep.to(pixels.dtype)
