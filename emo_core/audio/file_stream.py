"""An audio file's speech track without holding the file's samples (issue 22).

``load_speech_track(path)`` decodes the file block by block (PyAV), replaces NaN/inf, mixes to
mono and resamples to 16 kHz block by block with the same block grid and margins as
``waveform.resample_in_blocks``, so the samples are bit-equal to
``to_mono_16k(*load_audio_file(path))``; they go to ``SpilledSamples``, an unlinked temporary
file read back a range at a time (4 bytes per 16 kHz sample on disk: 230 MB per hour, none in
memory). The file's own rate and channels are never held: ``Mp4Writer`` decodes its soundtrack
from the file again at close (``audio=path``).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import EMOInputError
from .waveform import (
    _LOWPASS_WIDTH,
    MAX_PEAK,
    TARGET_RATE,
    _check_resample_cost,
    check_audio_file,
    check_sample_rate,
)

logger = logging.getLogger(__name__)
RESAMPLE_BLOCK = 1 << 20  # resample_in_blocks' default block: the same grid, the same numbers


class SpilledSamples:
    """``(T,)`` float32 samples in an unlinked temporary file. ``samples[a:b]`` reads them back
    as a tensor; ``shape``/``len`` as a 1-D tensor's. Nothing is left on disk after close."""

    def __init__(self, folder: str | None = None):
        # Lives as long as this object (closed by close() or when collected): no with-block.
        self._file = tempfile.TemporaryFile(prefix="emo-audio-", dir=folder)  # noqa: SIM115
        self.length = 0

    def append(self, block: torch.Tensor) -> None:
        data = block.detach().to(torch.float32).contiguous().numpy().tobytes()
        os.pwrite(self._file.fileno(), data, 4 * self.length)
        self.length += block.shape[0]

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.length,))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index) -> torch.Tensor:
        if not isinstance(index, slice):
            raise TypeError("SpilledSamples reads ranges: samples[start:stop]")
        start, stop, step = index.indices(self.length)
        if step != 1:
            raise ValueError("SpilledSamples reads contiguous ranges only")
        count = max(0, stop - start)
        data = os.pread(self._file.fileno(), 4 * count, 4 * start) if count else b""
        return torch.frombuffer(bytearray(data), dtype=torch.float32) if count else \
            torch.zeros(0)

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True, eq=False)
class SpeechTrack:
    """A file's 16 kHz mono track. ``samples``: ``(T16,)`` (``SpilledSamples``);
    ``num_samples``/``sample_rate``: the file's own length and rate (the frame count uses them);
    ``peak``: largest absolute sample of any channel (the silence check); ``source``: the file,
    open (``Mp4Writer(audio=track.source)`` decodes the soundtrack from it at close)."""

    samples: SpilledSamples
    num_samples: int
    sample_rate: int
    peak: float
    path: Path
    source: object

    def close(self) -> None:
        self.samples.close()
        self.source.close()


def decode_blocks(source):
    """The first audio stream of ``source`` (a path, or a binary file opened on one: read from
    its start) as ``(rate, planar float32 (C, n) numpy block)`` pairs (a generator; the
    container stays open while it runs; the resampler's flush comes with rate None)."""
    import av

    path = getattr(source, "name", source)

    def blocks():
        if hasattr(source, "seek"):
            source.seek(0)
        with av.open(source if hasattr(source, "read") else str(source)) as container:
            if not container.streams.audio:
                raise EMOInputError(
                    f"audio file {path} has no audio stream; pass a file with sound "
                    "(wav, mp3, m4a, flac, ogg or a video with an audio track)")
            resampler = av.AudioResampler(format="fltp")  # keeps rate and layout
            for frame in container.decode(container.streams.audio[0]):
                for converted in resampler.resample(frame):
                    yield frame.sample_rate, converted.to_ndarray().astype(np.float32,
                                                                             copy=False)
            for converted in resampler.resample(None):
                yield None, converted.to_ndarray().astype(np.float32, copy=False)

    return blocks()


def load_speech_track(path: str | Path, folder: str | None = None) -> SpeechTrack:
    """Decode ``path`` block by block into its 16 kHz mono track (see the module docstring).
    Raises ``EMOInputError`` as ``load_audio_file`` does (missing, undecodable, empty, no finite
    sample, unnormalised, unsupported rate)."""
    import av

    path = check_audio_file(path)
    samples = SpilledSamples(folder)
    # Kept open: the writer decodes the soundtrack from it at close, also if the path was
    # moved or deleted during a long render.
    handle = open(path, "rb")  # noqa: SIM115 (lives in the SpeechTrack)
    try:
        stats = _stream_16k(decode_blocks(handle), samples, path)
    except EMOInputError:
        samples.close()
        handle.close()
        raise
    except (av.error.FFmpegError, ValueError, OSError) as err:
        samples.close()
        handle.close()
        raise EMOInputError(
            f"audio file {path} could not be decoded ({err}); convert it to wav, mp3 or flac"
        ) from err
    total, rate, peak = stats
    logger.debug("decoded %s block by block: %d samples at %d Hz -> %d at 16 kHz", path, total,
                 rate, samples.length)
    return SpeechTrack(samples, total, rate, peak, path, handle)


def _stream_16k(blocks, sink: SpilledSamples, path: Path) -> tuple[int, int, float]:
    """Clean, mix and resample decoded ``blocks`` into ``sink``; ``(samples, rate, peak)``."""
    rate, peak, bad, seen, resampler = None, 0.0, 0, 0, None
    for block_rate, block in blocks:
        if rate is None and block_rate is not None:
            rate = block_rate
            try:
                _check_resample_cost(check_sample_rate(rate))
            except EMOInputError as error:
                raise EMOInputError(f"audio file {path}: {error}") from None
            resampler = _BlockResampler(rate, sink)
        if block.shape[1] == 0:
            continue
        if resampler is None:
            raise EMOInputError(f"audio file {path} could not be decoded (no sample rate)")
        channels = torch.from_numpy(block)
        finite = torch.isfinite(channels)
        bad += int(channels.numel() - finite.sum())
        seen += channels.numel()
        channels = torch.nan_to_num(channels, nan=0.0, posinf=0.0, neginf=0.0)
        block_peak = float(channels.abs().max())
        if block_peak > MAX_PEAK:
            raise EMOInputError(
                f"audio file {path} has samples up to {block_peak:.3g}, far outside the -1..1 "
                "range of audio (float samples that were never normalised); normalise it (e.g. "
                "sox --norm, or ffmpeg -af loudnorm) and try again")
        peak = max(peak, block_peak)
        resampler.push(channels.mean(dim=0) if channels.shape[0] > 1 else channels[0])
    if resampler is None or resampler.total == 0:
        raise EMOInputError(f"audio is empty: {path} decoded to 0 samples; use a file with sound")
    if bad == seen:
        raise EMOInputError(f"audio file {path} has no finite samples (all are NaN or infinite); "
                            "the file is corrupt: re-export it")
    if bad:
        logger.warning("audio has %d NaN/infinite samples out of %d; replacing them with 0 "
                       "(silence)", bad, seen)
    resampler.finish()
    return resampler.total, rate, peak


class _BlockResampler:
    """Mono samples pushed in any pieces -> 16 kHz in ``sink``, on ``resample_in_blocks``' grid:
    output block ``[start, end)`` (``end - start = RESAMPLE_BLOCK`` rounded to ``orig``) from the
    inputs ``[start - margin, end + margin)``, so every output sample equals that function's."""

    def __init__(self, rate: int, sink: SpilledSamples):
        self.rate, self.sink = rate, sink
        g = math.gcd(rate, TARGET_RATE)
        self.orig, self.new = rate // g, TARGET_RATE // g
        width = math.ceil(_LOWPASS_WIDTH * self.orig / (0.99 * min(self.orig, self.new))) + 1
        self.margin = self.orig * (math.ceil(width / self.orig) + 2)
        self.block = max(self.orig, RESAMPLE_BLOCK // self.orig * self.orig)
        self.pieces: list[torch.Tensor] = []
        self.buffer_start = 0  # sample index of the buffer's first sample
        self.total = 0  # samples pushed so far
        self.next_start = 0  # first sample of the next output block

    def push(self, mono: torch.Tensor) -> None:
        self.total += mono.shape[0]
        if self.rate == TARGET_RATE:
            self.sink.append(mono)
            return
        self.pieces.append(mono.clone())
        while self.total >= self.next_start + self.block + self.margin:
            self._emit(final_total=None)

    def finish(self) -> None:
        if self.rate == TARGET_RATE:
            return
        while self.next_start < self.total:
            self._emit(final_total=self.total)

    def _emit(self, final_total) -> None:
        import torchaudio.functional as AF

        start = self.next_start
        end = start + self.block if final_total is None else min(start + self.block,
                                                                 final_total)
        lo = max(0, start - self.margin)
        hi = end + self.margin if final_total is None else min(final_total, end + self.margin)
        buffer = torch.cat(self.pieces) if len(self.pieces) != 1 else self.pieces[0]
        part = AF.resample(buffer[lo - self.buffer_start:hi - self.buffer_start],
                           orig_freq=self.rate, new_freq=TARGET_RATE)
        first = start // self.orig * self.new
        last = (math.ceil(self.new * final_total / self.orig) if end == final_total
                else end // self.orig * self.new)
        offset = lo // self.orig * self.new
        self.sink.append(part[first - offset:last - offset])
        self.next_start = end
        keep_from = max(0, end - self.margin)  # the next block's lo
        self.pieces = [buffer[keep_from - self.buffer_start:]]
        self.buffer_start = keep_from
