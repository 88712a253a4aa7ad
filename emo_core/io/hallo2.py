"""Hallo2 (fudan-generative-vision/hallo2): what a converted checkpoint records besides Hallo's.

Hallo2's ``net.pth`` has exactly Hallo's layout (its model code is Hallo's, byte for byte), so it
converts with ``io/hallo.py``. What differs is the inference of its ``scripts/inference_long.py``
with its released ``configs/inference/long.yaml``; those settings travel in the checkpoint's
``sampling`` config, next to Hallo's (which long.yaml repeats: 512 px, 25 fps, 16 + 2 frames,
40 DDIM steps, CFG 3.5, pose/face/lip 1.0, face region 1.2x):

* ``variant: "hallo2"``: the sampling loop masks the motion frames, the audio front-end cuts;
* ``motion_mask``: ``use_mask: true``, ``mask_rate: 0.25``; the face region is always kept
  (``families/hallo2.py``);
* ``audio_segment_seconds``: ``use_cut: true`` with ``cut_audio``'s fixed 60 s
  (``audio/hallo2_features.py``).

Hallo2's super-resolution stage (``net_g.pth``, ``scripts/video_sr.py``) is a separate model run
on the finished video; it is not converted and not run here.
"""

from __future__ import annotations

import copy

from ..audio.hallo2_features import SEGMENT_SECONDS
from .hallo import HALLO_SAMPLING

HALLO2_MASK_RATE = 0.25  # long.yaml mask_rate: a motion-frame pixel is zeroed with p = 0.25

HALLO2_SAMPLING = {
    **copy.deepcopy(HALLO_SAMPLING),
    "variant": "hallo2",
    "motion_mask": {"rate": HALLO2_MASK_RATE, "keep_face": True},
    "audio_segment_seconds": SEGMENT_SECONDS,
}


def hallo2_sampling() -> dict:
    """A fresh copy of Hallo2's sampling config (what ``convert-hallo`` records for Hallo2)."""
    return copy.deepcopy(HALLO2_SAMPLING)


def is_hallo2(sampling: dict | None) -> bool:
    """Whether a checkpoint's ``sampling`` config is Hallo2's."""
    return (sampling or {}).get("variant") == "hallo2"
