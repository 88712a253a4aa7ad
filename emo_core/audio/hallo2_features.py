"""Hallo2's audio front-end: Hallo's (``audio.hallo_features``) on 60 s segments.

Hallo2's ``scripts/inference_long.py`` (``use_cut: true``, its released setting) cuts the driving
audio with pydub into 60 s pieces and runs Hallo's ``AudioProcessor.preprocess`` on each piece
SEPARATELY, then concatenates the per-frame features along time:

1. pydub measures the audio in whole milliseconds (``round(1000 * samples / rate)``) and cuts at
   ``k * 60 000`` ms; the last piece ends at that rounded length, so a few samples (< 0.5 ms) are
   dropped or zero-padded. ``60`` is a fixed default argument of Hallo2's ``cut_audio``.
2. each piece is normalised on its own statistics and gets its own
   ``frames = ceil(samples / rate * fps)``; wav2vec2 runs on the piece alone.
3. only the LAST piece is padded, by Hallo2's rule: when its own frame count is not a multiple of
   the clip, ``clip - total % clip`` frames of zeros are added, where ``total`` counts all pieces
   (so the concatenation usually ends on a whole clip; if the piece is a whole number of clips but
   the total is not, nothing is padded; if the total is but the piece is not, a whole clip is).
4. ``process_audio_emb``'s 5-frame windows run over the CONCATENATED features (windows cross the
   60 s boundaries): ``hallo_audio_windows`` as for Hallo.

The video has ``sum of the pieces' frame counts`` frames (= ``ceil(samples / rate * fps)`` of the
millisecond-rounded audio). Where Hallo2's features stop short of the last whole clip (the case
"piece a whole number of clips, total not" above), Hallo2 drops the last partial clip; here the
features are extended by repeating their last row (:func:`extend_to_clips`), which leaves every
window Hallo2 computes unchanged (its windows clamp at the last row) and gives the dropped frames.
Vocal separation, when asked for, runs on the whole track before the cut (Hallo2 separates each
piece; the two differ only near the 60 s boundaries).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .hallo_features import hallo_frame_count, hallo_normalize, wav2vec_frame_features

SEGMENT_SECONDS = 60  # Hallo2's cut_audio(length=60): a default argument, not a config value


@dataclass(frozen=True)
class Hallo2Segment:
    """One piece: ``values (n,)`` normalised (before padding), ``frames`` its own frame count,
    ``padding`` frames of zeros added (last piece only), ``start`` its first sample."""

    start: int
    values: torch.Tensor
    frames: int
    padding: int

    @property
    def rows(self) -> int:
        return self.frames + self.padding


def pydub_bounds(num_samples: int, sample_rate: int = 16000,
                 seconds: int = SEGMENT_SECONDS) -> list[tuple[int, int]]:
    """Sample ranges ``[start, end)`` of pydub's cut into ``seconds`` pieces. ``end`` may pass
    ``num_samples`` by < 0.5 ms (pydub pads with silence) or stop short of it (it truncates)."""
    length_ms = round(1000 * (float(num_samples) / sample_rate))  # pydub's len(AudioSegment)
    piece_ms = seconds * 1000
    count = length_ms // piece_ms + (1 if length_ms % piece_ms else 0)
    per_ms = sample_rate / 1000.0
    return [(int(i * piece_ms * per_ms), int(min((i + 1) * piece_ms, length_ms) * per_ms))
            for i in range(count)]


def hallo2_segments(waveform: torch.Tensor, fps: int = 25, clip_frames: int = 16,
                    sample_rate: int = 16000,
                    seconds: int = SEGMENT_SECONDS) -> Iterator[Hallo2Segment]:
    """``waveform: (n,)`` 16 kHz mono -> Hallo2's pieces, one at a time (steps 1-3 above)."""
    if waveform.ndim != 1 or waveform.numel() == 0:
        raise ValueError(f"waveform must be a non-empty (n,) tensor, got {tuple(waveform.shape)}")
    bounds = pydub_bounds(waveform.numel(), sample_rate, seconds)
    if not bounds:
        raise ValueError(f"audio of {waveform.numel()} samples is shorter than 1 ms")
    done = 0
    for index, (start, end) in enumerate(bounds):
        piece = waveform[start:end]
        if piece.numel() < end - start:  # pydub's silence up to the rounded millisecond
            piece = F.pad(piece, (0, end - start - piece.numel()))
        frames = hallo_frame_count(piece.numel(), sample_rate, fps)
        padding = 0
        if index == len(bounds) - 1 and frames % clip_frames:
            padding = clip_frames - (frames + done) % clip_frames
        yield Hallo2Segment(start, hallo_normalize(piece), frames, padding)
        done += frames


@torch.no_grad()
def hallo2_audio_features(wav2vec, waveform: torch.Tensor, fps: int = 25, clip_frames: int = 16,
                          sample_rate: int = 16000,
                          seconds: int = SEGMENT_SECONDS) -> tuple[torch.Tensor, int]:
    """``waveform: (n,)`` 16 kHz mono -> ``(features (rows, layers, C), audio_frames)``: Hallo2's
    ``audio_emb`` (pieces concatenated) and its ``audio_length``. wav2vec2 sees one piece at a
    time, so memory is bounded by 60 s of audio whatever the length."""
    parts, frames = [], 0
    for segment in hallo2_segments(waveform, fps, clip_frames, sample_rate, seconds):
        values = F.pad(segment.values, (0, segment.padding * (sample_rate // fps)))
        parts.append(wav2vec_frame_features(wav2vec, values, segment.rows).cpu())
        frames += segment.frames
    return torch.cat(parts), frames


def extend_to_clips(features: torch.Tensor, frames: int, clip_frames: int) -> torch.Tensor:
    """``features (rows, ...)`` -> at least ``ceil(frames / clip) * clip`` rows, the last row
    repeated (see the module docstring: Hallo2's windows are unchanged)."""
    need = math.ceil(frames / clip_frames) * clip_frames
    if features.shape[0] >= need:
        return features
    tail = features[-1:].expand(need - features.shape[0], *features.shape[1:])
    return torch.cat([features, tail])
