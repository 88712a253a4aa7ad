"""Streaming H.264 + AAC mp4 writer (PyAV) that never leaves a partial file behind."""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from ..audio.features import exact_fps
from ..errors import OutputWriteError

logger = logging.getLogger(__name__)

AUDIO_RATE = 48000  # AAC at a standard rate; the input is resampled at close, a chunk at a time.
# Input seconds resampled and encoded at a time: resampling a whole track at once held ~1.7 MiB
# per second of audio at close (64 MiB more peak RSS at 60 s than at 10 s).
AUDIO_CHUNK_SECONDS = 1.0


def fps_fraction(fps: float) -> Fraction:
    """The exact rate the frame count was computed with (29.97 -> 2997/100, 12.5 -> 25/2)."""
    return exact_fps(fps)


class Mp4Writer:
    """Write frames as they stream in; mux audio trimmed/padded to the video length at close.

    ``with Mp4Writer(path, fps, width, height, audio=(waveform (C, T), sample_rate)) as w:
    w.write(frames (k, H, W, 3) uint8)``; ``audio`` may be an audio file instead (a path or a
    binary file open on it): its first audio stream is decoded at close, a block at a time
    (nothing held while sampling). The file is built under a temporary name in the target
    folder and renamed on success; any exception (cancel included) deletes it.

    ``metadata``: container tags written the way ComfyUI's SaveVideo writes them (each value
    JSON-encoded, ``movflags=use_metadata_tags`` so the keys land in ``moov/udta/meta``), e.g.
    ``{"prompt": {...}, "workflow": {...}}``: ComfyUI's frontend restores the graph from a dropped
    file's ``workflow`` (or ``prompt``) tag. None or empty: no tags, the container as before.
    """

    def __init__(self, path, fps: float, width: int, height: int, audio=None, crf: int = 18,
                 metadata: dict | None = None):
        self.path = Path(path)
        self.fps = fps_fraction(fps)
        self.width, self.height = int(width), int(height)
        if self.width % 2 or self.height % 2:
            raise ValueError(f"H.264 needs even frame sizes, got {self.width}x{self.height}")
        self.audio = audio
        self.crf = crf
        self.metadata = dict(metadata or {})
        self.frames_written = 0
        self._container = None

    def __enter__(self) -> Mp4Writer:
        try:
            self._open()
        except BaseException as error:
            self._discard()
            if isinstance(error, (OSError, av.error.FFmpegError)):
                raise self._write_error(error) from error
            raise
        return self

    def _open(self) -> None:
        self._tmp = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".mp4.part",
                                   dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        # mkstemp makes 0600 files; a finished video should get the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        self._tmp.chmod(0o666 & ~umask)
        options = {"movflags": "use_metadata_tags"} if self.metadata else {}
        self._container = av.open(str(self._tmp), mode="w", format="mp4", options=options)
        for key, value in self.metadata.items():
            self._container.metadata[key] = json.dumps(value)
        self._video = self._container.add_stream("libx264", rate=self.fps)
        self._video.width, self._video.height = self.width, self.height
        self._video.pix_fmt = "yuv420p"
        # mbtree off: with x264's macroblock-tree rate control the same frames gave different
        # files from run to run (seen with PyAV 18's libx264, threaded or not), and "same seed,
        # same video" is a promise. At crf 18 the quality cost is negligible.
        self._video.options = {"crf": str(self.crf), "preset": "medium",
                               "x264-params": "mbtree=0"}
        self._audio = None
        if self.audio is not None:
            self._audio = self._container.add_stream("aac", rate=AUDIO_RATE, layout="mono")

    def _write_error(self, error: BaseException) -> OutputWriteError:
        if isinstance(error, FileNotFoundError) or not self.path.parent.is_dir():
            return OutputWriteError(  # not a disk-space problem: the folder went away
                f"could not write video {str(self.path)!r}: its folder "
                f"{str(self.path.parent)!r} was removed or renamed during the run; run again "
                "with an existing output folder")
        return OutputWriteError(
            f"could not write video {str(self.path)!r} ({error}); free disk space, raise the "
            "file-size limit (ulimit -f) or choose another output path")

    def write(self, frames) -> None:
        """``frames: (k, H, W, 3)`` uint8 (numpy or torch)."""
        if isinstance(frames, torch.Tensor):
            frames = frames.cpu().numpy()
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"frames must be (k, {self.height}, {self.width}, 3), got {frames.shape}")
        for frame in np.ascontiguousarray(frames, dtype=np.uint8):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = self.frames_written
            video_frame.time_base = 1 / self.fps
            try:
                self._container.mux(self._video.encode(video_frame))
            except (OSError, av.error.FFmpegError) as error:  # EFBIG, ENOSPC, EIO
                raise self._write_error(error) from error
            self.frames_written += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        """Success: finish, close, rename. Any failure (a cancel, SIGTERM, a full disk, an error
        while finishing or closing) removes the temporary file and re-raises the first error."""
        if exc_type is not None:
            self._discard()
            return
        try:
            self._finish()
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
        except BaseException as error:
            self._discard()
            if isinstance(error, (OSError, av.error.FFmpegError)):
                raise self._write_error(error) from error
            raise

    def _discard(self) -> None:
        """Close (errors ignored: the file is being thrown away) and delete the temporary file."""
        container, self._container = self._container, None
        try:
            if container is not None:
                container.close()
        except Exception as error:  # closing a failed mp4 flushes again and can fail again
            logger.debug("ignored while discarding %s: %s", self._tmp, error)
        finally:
            if getattr(self, "_tmp", None) is not None:
                self._tmp.unlink(missing_ok=True)

    def _finish(self) -> None:
        self._container.mux(self._video.encode(None))
        if self._audio is not None:
            seconds = self.frames_written / self.fps
            if isinstance(self.audio, (str, os.PathLike)) or hasattr(self.audio, "read"):
                chunks = fit_audio_file_chunks(self.audio, seconds)
            else:
                waveform, sample_rate = self.audio
                chunks = fit_audio_chunks(waveform, sample_rate, seconds)
            for packet in _encode_audio(self._audio, chunks):
                self._container.mux(packet)


def fit_audio(waveform, sample_rate: int, seconds: Fraction) -> np.ndarray:
    """Mono float32 at ``AUDIO_RATE``, trimmed or zero-padded to ``seconds`` exactly."""
    return np.concatenate([np.zeros(0, np.float32),
                           *fit_audio_chunks(waveform, sample_rate, seconds)])


def fit_audio_chunks(waveform, sample_rate: int, seconds: Fraction,
                     chunk_seconds: float = AUDIO_CHUNK_SECONDS):
    """:func:`fit_audio`'s samples as consecutive float32 chunks of about ``chunk_seconds``.

    torchaudio's sinc resampler is a strided convolution: output ``j`` reads the input around
    sample ``(j // new) * orig`` (rates divided by their gcd) within the kernel's half width
    (7 input samples at its defaults). Each chunk starts at a multiple of ``orig`` and is resampled
    with ``context`` real input samples on either side, of which only the chunk's own outputs
    are kept, so the chunks equal one whole-track resample (to float rounding) while memory
    stays one chunk's worth, whatever the track's length.
    """
    wave = torch.as_tensor(waveform, dtype=torch.float32)
    wave = wave.reshape(-1, wave.shape[-1])  # (C, T); channels averaged per chunk
    yield from _fit_chunks(_ForwardSamples([wave]), int(sample_rate), seconds, chunk_seconds)


def fit_audio_file_chunks(source, seconds: Fraction,
                          chunk_seconds: float = AUDIO_CHUNK_SECONDS):
    """:func:`fit_audio_chunks` of the first audio stream of ``source`` (a path or an open
    binary file), decoded a block at a time (the same samples as ``load_audio_file``'s): the
    track is never held whole."""
    from ..audio.file_stream import decode_blocks

    blocks = decode_blocks(source if hasattr(source, "read") else Path(source))
    rate, first = None, []
    for block_rate, block in blocks:  # the rate comes with the first decoded block
        first.append(torch.from_numpy(block))
        if block_rate is not None:
            rate = block_rate
            break
    if rate is None:
        return
    rest = (torch.from_numpy(block) for _, block in blocks)
    yield from _fit_chunks(_ForwardSamples(_chain(first, rest)), int(rate), seconds,
                           chunk_seconds)


def _chain(first, rest):
    yield from first
    yield from rest


class _ForwardSamples:
    """``(C, n)`` blocks read forward: ``fill(upto)`` decodes until ``end >= upto`` (or the end
    of the stream, ``done``), ``read(lo, hi)`` returns ``(C, hi - lo)``, ``drop(before)`` frees
    the samples before ``before``."""

    def __init__(self, blocks):
        self.blocks = iter(blocks)
        self.pieces: list[torch.Tensor] = []
        self.start = self.end = 0
        self.done = False

    def fill(self, upto: int) -> None:
        while not self.done and self.end < upto:
            block = next(self.blocks, None)
            if block is None:
                self.done = True
            elif block.shape[-1]:
                self.pieces.append(block)
                self.end += block.shape[-1]

    def read(self, lo: int, hi: int) -> torch.Tensor:
        if len(self.pieces) > 1:
            self.pieces = [torch.cat(self.pieces, dim=1)]
        return self.pieces[0][:, lo - self.start:hi - self.start]

    def drop(self, before: int) -> None:
        if before > self.start and self.pieces:
            whole = torch.cat(self.pieces, dim=1) if len(self.pieces) > 1 else self.pieces[0]
            self.pieces = [whole[:, before - self.start:].clone()]
            self.start = before


def _fit_chunks(samples: _ForwardSamples, rate: int, seconds: Fraction, chunk_seconds: float):
    import torchaudio.functional as AF

    gcd = math.gcd(rate, AUDIO_RATE)
    orig, new = rate // gcd, AUDIO_RATE // gcd
    step = orig * max(1, round(chunk_seconds * rate / orig))
    context = orig * (64 // orig + 2)  # > kernel half width + one stride
    target, done, start = round(seconds * AUDIO_RATE), 0, 0
    while done < target:
        samples.fill(start + step + context)
        total = samples.end if samples.done else None  # known once the stream has ended
        if total is not None and start >= total:
            break
        low, high = max(0, start - context), min(samples.end, start + step + context)
        # NaN/inf samples were replaced by silence for the features (documented); the encoder
        # gets the same clean samples, else AAC fails after the whole render (issue 23).
        wave = samples.read(low, high)
        mono = torch.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0).mean(dim=0)
        out = AF.resample(mono, rate, AUDIO_RATE) if rate != AUDIO_RATE else mono
        first = (start - low) // orig * new
        count = math.ceil(new * (step if total is None else min(step, total - start)) / orig)
        chunk = out[first:first + min(count, target - done)]
        done += chunk.shape[0]
        yield chunk.clamp(-1.0, 1.0).numpy()
        start += step
        samples.drop(max(0, start - context))
    for start in range(done, target, AUDIO_RATE):  # silence up to the video's end
        yield np.zeros(min(AUDIO_RATE, target - start), np.float32)


def _encode_audio(stream, chunks):
    """Encode float32 sample ``chunks`` in the encoder's frame size (the last frame partial)."""
    frame_size = stream.codec_context.frame_size or 1024
    pending, pts = np.zeros(0, np.float32), 0
    for chunk in chunks:
        pending = np.concatenate([pending, chunk])
        while pending.shape[0] >= frame_size:
            yield from _encode_frame(stream, pending[:frame_size], pts)
            pending, pts = pending[frame_size:], pts + frame_size
    if pending.shape[0]:
        yield from _encode_frame(stream, pending, pts)
    yield from stream.encode(None)


def _encode_frame(stream, samples: np.ndarray, pts: int):
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None]), format="fltp",
                                       layout="mono")
    frame.sample_rate = AUDIO_RATE
    frame.pts = pts
    frame.time_base = Fraction(1, AUDIO_RATE)
    yield from stream.encode(frame)
