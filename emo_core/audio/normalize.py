"""Whole-utterance waveform normalisation, computed in a streaming pass.

``Wav2Vec2FeatureExtractor(do_normalize=True)`` normalises each utterance to zero mean and unit
variance: ``(x - mean) / sqrt(var + 1e-7)`` with the population variance. The statistics here are
accumulated block by block in float64, so a 10-minute clip needs no float64 copy, and chunked
feature extraction normalises every chunk with the same statistics as the one-shot path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm adds this to the variance.
HF_NORM_EPS = 1e-7
_BLOCK = 1 << 18  # samples per float64 block (2 MB) while accumulating statistics


@dataclass(frozen=True, eq=False)
class NormalizedSignal:
    """A 16 kHz waveform with its utterance statistics; segments come out normalised.

    ``raw``: ``(T16,)`` float32 CPU. ``length`` may exceed ``T16`` (``min_length`` padding); samples
    past the end read as 0, which is the normalised mean, i.e. silence after normalisation.
    """

    raw: torch.Tensor
    mean: float
    inv_std: float
    length: int

    @classmethod
    def from_waveform(cls, raw: torch.Tensor, min_length: int = 0) -> NormalizedSignal:
        """``raw: (T16,)`` float32 -> signal of length ``max(T16, min_length)``."""
        mean, var = utterance_stats(raw)
        return cls(raw=raw, mean=mean, inv_std=1.0 / math.sqrt(var + HF_NORM_EPS),
                   length=max(int(raw.shape[0]), int(min_length)))

    def segment(self, start: int, end: int) -> torch.Tensor:
        """Normalised samples ``[start, end)`` -> ``(end - start,)`` float32 (zero past the end)."""
        if not 0 <= start <= end <= self.length:
            raise ValueError(f"segment [{start}, {end}) outside signal of length {self.length}")
        stop = min(end, self.raw.shape[0])
        part = (self.raw[start:stop] - self.mean) * self.inv_std if stop > start else self.raw[:0]
        if stop < end:
            part = torch.cat([part, part.new_zeros(end - max(stop, start))])
        return part


def utterance_stats(raw: torch.Tensor) -> tuple[float, float]:
    """Mean and population variance of ``raw: (T,)`` accumulated in float64 blocks."""
    count = int(raw.shape[0])
    if count == 0:
        raise ValueError("utterance_stats needs at least one sample, got an empty waveform")
    total = 0.0
    for start in range(0, count, _BLOCK):
        total += float(raw[start:start + _BLOCK].double().sum())
    mean = total / count
    # Second pass around the mean (not E[x^2] - mean^2): no cancellation for loud DC offsets.
    squares = 0.0
    for start in range(0, count, _BLOCK):
        squares += float(((raw[start:start + _BLOCK].double() - mean) ** 2).sum())
    return mean, squares / count
