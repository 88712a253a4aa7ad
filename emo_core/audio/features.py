"""Per-video-frame wav2vec features with a +-window of neighbouring frames, at any fps.

Steps (Hallo-compatible): waveform -> mono 16 kHz -> zero mean / unit variance over the whole
utterance (``Wav2Vec2FeatureExtractor(do_normalize=True)``) -> wav2vec2 CNN (50 Hz) -> linear
interpolation to exactly ``F`` video frames -> feature projection -> transformer; the outputs of all
``L`` transformer layers are stacked per frame ``(F, L, C)`` and each frame gets the window of
``2*window+1`` frames around it, edges clamped: ``(F, 2*window+1, L, C)``.

Frame count: ``F = round(samples / sample_rate * fps)`` in exact rational arithmetic, halves
rounded up, with ``fps`` taken at its decimal value (29.97 means 2997/100), so any length and frame
rate gives the same count the video writer uses. Audio that rounds to 0 frames is refused ("shorter
than one video frame at X fps"). Audio shorter than the CNN's receptive field (25 ms) but at least
one frame long is padded with normalised silence.

Long audio runs in chunks of ``chunk_seconds`` of video frames, each seen by the transformer with
``context_seconds`` of extra frames on both sides that are then discarded. Normalisation and the
CNN's GroupNorm use whole-utterance statistics and the interpolation uses the global frame grid,
so only the transformer's attention span differs from a one-shot run; audio that fits in one chunk
*is* the one-shot run. Peak memory is bounded by the chunk size plus the ``(F, L, C)`` result.

``stream=True`` holds no result: ``windows`` computes the chunks a clip needs when it is read
(``audio/streamed.py``), bit-equal to the eager rows, so memory does not grow with the length.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import torch

from ..errors import EMOCancelled, EMOInputError
from .file_stream import SpeechTrack
from .normalize import NormalizedSignal
from .streamed import StreamedWindows, Wav2VecChunks, encode_span
from .wav2vec_parts import ConvFrontEnd, conv_geometry
from .waveform import TARGET_RATE, check_sample_rate, to_mono_16k

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SECONDS = 20.0
DEFAULT_CONTEXT_SECONDS = 2.0


@dataclass(frozen=True, eq=False)
class AudioFeatures:
    """wav2vec windows for every video frame.

    ``windows``: ``(F, 2*window+1, L, C)`` float32 CPU. Eager: a strided *view* of one
    ``(F + 2*window, L, C)`` buffer (no 5x copy). Streamed: a ``StreamedWindows`` (``shape``,
    ``__getitem__``) computing the rows a request reads. Index or slice it per clip and move that
    to the device (``windows[frames].to(device)``), or call ``.contiguous()`` for a plain tensor.
    ``waveform_16k``: ``(T16,)`` float32 mono 16 kHz, before normalisation (a ``SpilledSamples``
    when made from a ``SpeechTrack``: ranges read back from disk). ``front_end``: the
    model family's audio front-end that made them (``ModelFamily.audio_front_end``); a family
    may pad ``windows`` past ``num_frames`` (Hallo: to whole clips).
    """

    windows: torch.Tensor | StreamedWindows
    num_frames: int
    fps: float
    waveform_16k: torch.Tensor
    front_end: str = "emo"

    @property
    def window(self) -> int:
        """Frames on each side of the centre frame (``m`` in the paper)."""
        return (self.windows.shape[1] - 1) // 2

    @property
    def frame_features(self) -> torch.Tensor:
        """Centre frame of every window: ``(F, L, C)`` (a view)."""
        return self.windows[:, self.window]


def exact_fps(fps) -> Fraction:
    """``fps`` as an exact decimal fraction: ``29.97 -> 2997/100``, ``12.5 -> 25/2``."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)):
        raise EMOInputError(f"fps {fps!r} is not a number; pass frames per second such as 25")
    if isinstance(fps, float) and not math.isfinite(fps):
        raise EMOInputError(f"fps {fps!r} is not finite; pass frames per second such as 25")
    # repr() is the shortest decimal that round-trips, i.e. what the user typed.
    value = Fraction(repr(fps)) if isinstance(fps, float) else Fraction(fps)
    if value <= 0:
        raise EMOInputError(f"fps {fps!r} must be positive; pass frames per second such as 25")
    return value


def frame_count(num_samples: int, sample_rate: int, fps) -> int:
    """``round(num_samples / sample_rate * fps)`` exactly (halves round up)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise EMOInputError(f"sample count {num_samples!r} must be a whole number >= 0")
    frames = Fraction(num_samples, check_sample_rate(sample_rate)) * exact_fps(fps)
    return math.floor(frames + Fraction(1, 2))


def extract_audio_features(wav2vec, waveform, sample_rate, fps, window: int = 2,
                           chunk_seconds: float = DEFAULT_CHUNK_SECONDS, device=None, dtype=None,
                           context_seconds: float = DEFAULT_CONTEXT_SECONDS, progress=None,
                           cancel=None, stream: bool = False) -> AudioFeatures:
    """``waveform``: ``(T,) | (C, T) | (1, C, T)`` at ``sample_rate`` (or a ``SpeechTrack``, a
    file's 16 kHz track; ``sample_rate`` is then its own) -> ``AudioFeatures`` with
    ``windows: (F, 2*window+1, L, C)``, ``F = frame_count(T, sample_rate, fps)``.

    ``wav2vec``: a transformers ``Wav2Vec2Model``. ``device``/``dtype`` default to the model's;
    if they differ, the model is moved there for the call and moved back afterwards.
    ``progress(done, total)`` is called before the first chunk and after each one (chunks are
    the units); ``cancel()`` returning True before a chunk raises ``EMOCancelled``, so a host's
    interrupt lands within one wav2vec call.

    ``stream=True``: only the statistics passes run here; ``windows`` is a
    :class:`~emo_core.audio.streamed.StreamedWindows` that computes the chunks a request needs
    (bit-equal rows, at most two chunks held), so ``wav2vec`` must stay alive (and on
    ``device``) while the windows are read.
    """
    _check_options(window, chunk_seconds, context_seconds)
    if isinstance(waveform, SpeechTrack):  # a file's 16 kHz track, decoded block by block
        waveform_16k, num_samples = waveform.samples, waveform.num_samples
        rate = waveform.sample_rate
    else:
        waveform_16k = to_mono_16k(waveform, sample_rate)  # validates shape, type and rate
        num_samples = int(waveform.shape[-1])
        rate = check_sample_rate(sample_rate)
    num_frames = frame_count(num_samples, rate, fps)
    if num_frames < 1:
        raise EMOInputError(
            f"audio is shorter than one video frame at {float(exact_fps(fps)):g} fps "
            f"({num_samples} samples at {rate} Hz = {1000 * num_samples / rate:.1f} ms); "
            f"use at least {500 / float(exact_fps(fps)):.1f} ms of audio")
    frames_per_chunk = max(1, math.ceil(chunk_seconds * float(exact_fps(fps))))
    margin = math.ceil(context_seconds * float(exact_fps(fps)))
    config = wav2vec.config
    spans = chunk_spans(num_frames, frames_per_chunk, margin)
    signal = NormalizedSignal.from_waveform(waveform_16k, min_length=conv_geometry(config)[1])
    # Statistics blocks as long as the longest chunk: the CNN never sees more samples at once.
    longest = max(end - start for _, _, start, end in spans)
    block_samples = math.ceil(longest * TARGET_RATE / float(exact_fps(fps)))
    if stream:
        return _streamed_features(wav2vec, signal, spans, num_frames, window, fps, device, dtype,
                                  block_samples, waveform_16k, progress)
    # Allocated outside inference_mode: callers may modify the result in place.
    buffer = torch.empty(num_frames + 2 * window, config.num_hidden_layers, config.hidden_size)
    with _prepared(wav2vec, device, dtype) as (run_device, run_dtype):
        conv = ConvFrontEnd(wav2vec, signal, run_device, run_dtype, global_norm=len(spans) > 1,
                            block_samples=block_samples)
        for index, (start, end, context_start, context_end) in enumerate(spans):
            if progress is not None:
                progress(index, len(spans))
            if cancel is not None and cancel():
                raise EMOCancelled(f"audio features cancelled before chunk {index + 1}")
            layers = encode_span(wav2vec, conv, num_frames, context_start, context_end)
            buffer[window + start:window + end] = layers[start - context_start:end - context_start]
        if progress is not None:
            progress(len(spans), len(spans))
    logger.info("audio features: %d frames at %s fps in %d chunk(s), %d layers x %d",
                num_frames, fps, len(spans), config.num_hidden_layers, config.hidden_size)
    return AudioFeatures(windows=_window_view(buffer, window), num_frames=num_frames,
                         fps=float(fps), waveform_16k=waveform_16k)


def _streamed_features(wav2vec, signal, spans, num_frames, window, fps, device, dtype,
                       block_samples, waveform_16k, progress) -> AudioFeatures:
    """The statistics passes now; the chunks when the windows are read (``StreamedWindows``)."""
    if progress is not None:
        progress(0, 1)
    with _prepared(wav2vec, device, dtype) as (run_device, run_dtype):
        conv = ConvFrontEnd(wav2vec, signal, run_device, run_dtype, global_norm=len(spans) > 1,
                            block_samples=block_samples)
    chunks = Wav2VecChunks(wav2vec, conv, num_frames, spans,
                           prepared=lambda: _prepared(wav2vec, run_device, run_dtype))
    config = wav2vec.config
    windows = StreamedWindows(chunks, window, config.num_hidden_layers, config.hidden_size)
    if progress is not None:
        progress(1, 1)
    logger.info("audio features: %d frames at %s fps, streamed in %d chunk(s), %d layers x %d",
                num_frames, fps, len(spans), config.num_hidden_layers, config.hidden_size)
    return AudioFeatures(windows=windows, num_frames=num_frames, fps=float(fps),
                         waveform_16k=waveform_16k)


def chunk_spans(num_frames: int, frames_per_chunk: int, margin: int):
    """``[(start, end, context_start, context_end)]`` covering ``[0, num_frames)``.

    One span without margins when everything fits in one chunk (the one-shot run).
    """
    if num_frames <= frames_per_chunk:
        return [(0, num_frames, 0, num_frames)]
    return [(start, min(start + frames_per_chunk, num_frames), max(0, start - margin),
             min(num_frames, start + frames_per_chunk + margin))
            for start in range(0, num_frames, frames_per_chunk)]


def _window_view(buffer: torch.Tensor, window: int) -> torch.Tensor:
    """Clamp the edges in place, then ``(F + 2w, L, C) -> (F, 2w+1, L, C)`` strided view."""
    if window:
        buffer[:window] = buffer[window]
        buffer[-window:] = buffer[-window - 1]
    return buffer.unfold(0, 2 * window + 1, 1).permute(0, 3, 1, 2)


def _check_options(window, chunk_seconds, context_seconds) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"window must be a whole number >= 0, got {window!r}")
    if not chunk_seconds > 0:
        raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds!r}")
    if not context_seconds >= 0:
        raise ValueError(f"context_seconds must be >= 0, got {context_seconds!r}")


@contextmanager
def _prepared(wav2vec, device, dtype):
    """Eval mode, no autograd, and the requested device/dtype for the duration of the call."""
    param = next(wav2vec.parameters())
    old_device, old_dtype, was_training = param.device, param.dtype, wav2vec.training
    run_device = torch.device(device) if device is not None else old_device
    run_dtype = dtype if dtype is not None else old_dtype
    moved = run_device != old_device or run_dtype != old_dtype
    if moved:
        wav2vec.to(run_device, run_dtype)
    wav2vec.eval()  # dropout / LayerDrop would make features random
    try:
        with torch.inference_mode():
            yield run_device, run_dtype
    finally:
        wav2vec.train(was_training)
        if moved:
            wav2vec.to(old_device, old_dtype)


__all__ = ["AudioFeatures", "DEFAULT_CHUNK_SECONDS", "TARGET_RATE", "chunk_spans",
           "exact_fps", "extract_audio_features", "frame_count"]
