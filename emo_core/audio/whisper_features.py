"""Per-video-frame whisper features, as EchoMimic's ``Audio2Feature`` computes them, at any fps.

1. log-mel of the whole waveform (``whisper_mel.py``; one global maximum);
2. 30 s segments of 3000 mel columns (the last one zero-padded in the log-mel domain), each
   through the encoder, stacking the input embedding and every block's output:
   ``(1500, 1 + layers, D)`` per segment, truncated to ``int(columns_in_segment / 2)`` rows
   (50 rows per second), segments concatenated -> ``(T, 1 + layers, D)``;
3. video frame ``i`` at ``fps`` takes the 10 whisper rows ``c - 4 .. c + 5`` around
   ``c = floor(i * 50 / fps)``, clamped to ``[0, T - 1]``, flattened row-major to
   ``(10 * (1 + layers), D)`` tokens (EchoMimic's ``get_sliced_feature``).

Frame count: ``round(seconds * fps)`` exactly (``features.frame_count``), as for EMO, instead of
EchoMimic's ``min(-L, number of chunks)``; every frame's chunk follows EchoMimic's rule. Only the
``(T, 1 + layers, D)`` rows are kept (tiny: 50 rows/s); per-frame chunks are gathered per
context window, so nothing grows 10x with the video length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch

from ..errors import EMOCancelled, EMOInputError
from ..io.whisper import run_layers
from .features import exact_fps, frame_count
from .waveform import TARGET_RATE, check_sample_rate, to_mono_16k
from .whisper_mel import N_FFT, SEGMENT_FRAMES, log_mel_spectrogram

ROWS_PER_SECOND = 50  # encoder rows per second (mel hop 10 ms, conv stride 2)
ROWS_BEFORE, ROWS_AFTER = 4, 5  # EchoMimic's audio_feat_length [2, 2] at 2 rows per 25 fps frame


@dataclass(frozen=True, eq=False)
class WhisperFeatures:
    """``rows: (T, 1 + layers, D)`` float32 CPU whisper rows (50 per second) for a clip of
    ``num_frames`` video frames at ``fps``; ``waveform_16k: (T16,)`` mono 16 kHz."""

    rows: torch.Tensor
    num_frames: int
    fps: float
    waveform_16k: torch.Tensor
    front_end: str = "whisper"  # ModelFamily.audio_front_end of the EchoMimic family

    @property
    def tokens_per_frame(self) -> int:
        return (ROWS_BEFORE + ROWS_AFTER + 1) * self.rows.shape[1]

    def chunks(self, frames) -> torch.Tensor:
        """Audio tokens of the video frames ``frames`` (ints): ``(n, 10 * (1 + layers), D)``."""
        index = chunk_indices(frames, self.fps, self.rows.shape[0])
        return self.rows[index].flatten(1, 2)


def chunk_indices(frames, fps, num_rows: int) -> torch.Tensor:
    """``(n, 10)`` int64 whisper rows of each video frame (see module docstring)."""
    rate = Fraction(ROWS_PER_SECOND) / exact_fps(fps)
    centres = torch.tensor([math.floor(int(i) * rate) for i in frames], dtype=torch.int64)
    offsets = torch.arange(-ROWS_BEFORE, ROWS_AFTER + 1, dtype=torch.int64)
    return (centres[:, None] + offsets).clamp(0, max(num_rows - 1, 0))


def encode_rows(encoder, waveform_16k: torch.Tensor, device=None, dtype=None, cancel=None
                ) -> torch.Tensor:
    """``waveform_16k: (T16,)`` -> whisper rows ``(T, 1 + layers, D)`` float32 CPU."""
    if waveform_16k.shape[-1] <= N_FFT // 2:
        raise EMOInputError(f"the audio is {waveform_16k.shape[-1]} samples at 16 kHz; whisper "
                            f"needs more than {N_FFT // 2} (12.5 ms); pass a longer clip")
    device = device or encoder.conv1.weight.device
    dtype = dtype or encoder.conv1.weight.dtype  # fp16 weights (the nodes' precision) take fp16
    mel = log_mel_spectrogram(waveform_16k.to(torch.float32))
    columns = mel.shape[-1]
    parts = []
    for seek in range(0, columns, SEGMENT_FRAMES):
        if cancel is not None and cancel():
            raise EMOCancelled("cancelled while computing whisper features")
        segment = mel[:, seek:seek + SEGMENT_FRAMES]
        used = segment.shape[-1]
        segment = torch.nn.functional.pad(segment, (0, SEGMENT_FRAMES - used))
        with torch.inference_mode():
            stacked = run_layers(encoder, segment[None].to(device, dtype or torch.float32))
        parts.append(stacked[0, : used // 2].float().cpu())
    return torch.cat(parts)


def extract_whisper_features(encoder, waveform, sample_rate, fps, device=None, dtype=None,
                             cancel=None) -> WhisperFeatures:
    """Any waveform (``(T,)``, ``(C, T)``, ``(B, C, T)``) at any rate -> ``WhisperFeatures``
    for ``round(seconds * fps)`` video frames."""
    mono = to_mono_16k(waveform, sample_rate)  # validates shape, type and rate
    frames = frame_count(int(waveform.shape[-1]), check_sample_rate(sample_rate), fps)
    if frames < 1:
        raise EMOInputError(f"the audio ({mono.shape[-1] / TARGET_RATE:.3f} s) is shorter than "
                            f"one video frame at {fps} fps; pass a longer clip")
    rows = encode_rows(encoder, mono, device=device, dtype=dtype, cancel=cancel)
    return WhisperFeatures(rows=rows, num_frames=frames, fps=float(fps), waveform_16k=mono)
