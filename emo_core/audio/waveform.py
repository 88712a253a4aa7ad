"""Audio waveforms: decode files with PyAV, mix to mono, resample to 16 kHz, validate.

Decisions (what callers can rely on):

- Layouts: ``to_mono_16k`` accepts ``(T,)``, ``(C, T)`` and ComfyUI's AUDIO ``(B, C, T)`` with
  ``B == 1``; anything else (an IMAGE ``(B, H, W, C)``, a batch of clips, ``(T, C)`` with a huge
  "channel" count) is an ``EMOInputError`` that names the shape. At most ``MAX_CHANNELS`` channels.
- Sample types: float tensors/arrays are used as they are (nominal range -1..1); integer PCM is
  scaled to -1..1 (int16 / 32768, int32 / 2**31, uint8 centred on 128).
- Empty audio (no samples or no channels) is an ``EMOInputError`` ("audio is empty").
- NaN / +-inf samples are replaced with 0 and a warning with their count is logged: a handful of
  corrupt samples should not stop an hour-long render, and 0 is silence. If *every* sample is
  non-finite the input is not audio and an ``EMOInputError`` is raised.
- Samples beyond +-``MAX_PEAK`` (unnormalised float audio, e.g. int PCM stored as float) are an
  ``EMOInputError`` saying so; a slight overshoot of float files (up to 8x) is used as it is.
- WAV files whose header announces a data size the file does not have are refused
  (``check_wav_header``): decoders trust the header and would return a few samples silently.
- Silence (all zeros) is valid and produces frames; refusing silent takes is the caller's policy.
- Too-short audio is checked where the video frame rate is known
  (``features.extract_audio_features`` raises "shorter than one video frame at X fps").
- Resampling uses ``torchaudio.functional.resample`` (windowed sinc). Its kernel grows with the
  reduced rate ratio; rates that would need a kernel over ``MAX_SINC_KERNEL`` elements
  (e.g. 44101 Hz) are refused with a message asking for a standard rate, instead of silently
  using gigabytes.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from ..errors import EMOInputError

logger = logging.getLogger(__name__)

TARGET_RATE = 16_000
MAX_CHANNELS = 64
# torchaudio builds a (new/g, 2*width + orig/g) sinc kernel in float64; 16 M elements = 128 MB.
MAX_SINC_KERNEL = 16_000_000
_LOWPASS_WIDTH = 6  # torchaudio's default lowpass_filter_width
_BLOCK = 1 << 18  # samples per block when scanning long clips
# Decoded samples are nominally -1..1; float files may overshoot a little. Far beyond this the
# file holds unnormalised values (e.g. int PCM stored as float) that would saturate the features.
MAX_PEAK = 8.0


def load_audio_file(path: str | Path) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream of ``path`` (wav, mp3, m4a/aac, flac, ogg, or a video file).

    Returns ``(waveform (C, T) float32 in -1..1, sample_rate)``; channels as stored in the file.
    Raises ``EMOInputError`` naming the file when it is missing, unreadable or has no audio.
    """
    import av  # imported here: decoding is the only place that needs PyAV

    path = check_audio_file(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise EMOInputError(
                    f"audio file {path} has no audio stream; pass a file with sound "
                    "(wav, mp3, m4a, flac, ogg or a video with an audio track)")
            stream = container.streams.audio[0]
            chunks, rate = _decode_stream(av, container, stream)
    except EMOInputError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as err:
        raise EMOInputError(
            f"audio file {path} could not be decoded ({err}); convert it to wav, mp3 or flac"
        ) from err
    if not chunks or rate is None:
        raise EMOInputError(f"audio is empty: {path} decoded to 0 samples; use a file with sound")
    waveform = torch.from_numpy(np.concatenate(chunks, axis=1))
    if waveform.shape[1] == 0:
        raise EMOInputError(f"audio is empty: {path} decoded to 0 samples; use a file with sound")
    _check_peak(waveform, f"file {path}")
    if not bool(torch.isfinite(waveform).any()):
        raise EMOInputError(f"audio file {path} has no finite samples (all are NaN or infinite); "
                            "the file is corrupt: re-export it")
    try:  # the check to_mono_16k makes later, here with the file's name
        _check_resample_cost(check_sample_rate(rate))
    except EMOInputError as error:
        raise EMOInputError(f"audio file {path}: {error}") from None
    logger.debug("decoded %s: %d channels, %d samples at %d Hz", path, *waveform.shape, rate)
    return waveform, int(rate)


def check_audio_file(path: str | Path) -> Path:
    """Cheap checks before any model runs: the file exists and a WAV header is consistent."""
    path = Path(path)
    if not path.is_file():
        raise EMOInputError(f"audio file {path} does not exist; check the path")
    check_wav_header(path)
    return path


def _check_peak(waveform: torch.Tensor, source) -> None:
    """Refuse samples far outside -1..1 (``MAX_PEAK``): unnormalised float audio."""
    peak = max((float(torch.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0).abs().max())
                for block in waveform.reshape(-1).split(_BLOCK)), default=0.0)
    if peak > MAX_PEAK:
        raise EMOInputError(
            f"audio {source} has samples up to {peak:.3g}, far outside the -1..1 range of "
            "audio (float samples that were never normalised); normalise it (e.g. sox --norm, "
            "or ffmpeg -af loudnorm) and try again")


def check_wav_header(path: Path) -> None:
    """A RIFF/WAVE file whose ``data`` chunk size disagrees with the file is refused: decoders
    trust the header and would silently return a few samples (or stop early)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        size = path.stat().st_size
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk_id, length = handle.read(4), int.from_bytes(handle.read(4), "little")
            if chunk_id == b"data":
                _check_data_chunk(path, handle, offset + 8, length, size)
                return
            offset += 8 + length + (length & 1)


def _check_data_chunk(path: Path, handle, start: int, length: int, size: int) -> None:
    if length in (0, 0xFFFFFFFF) and size - start > 0:  # streaming writers leave it unset
        length = 0xFFFFFFFF
    if length == 0xFFFFFFFF:
        return
    end = start + length + (length & 1)
    if end > size:
        raise EMOInputError(
            f"audio file {path} is truncated: its header announces {length:,} bytes of samples "
            f"but only {size - start:,} are there; export or copy it again")
    offset = end
    while offset + 8 <= size:  # what follows the samples must be well-formed chunks (LIST...)
        handle.seek(offset)
        chunk_id, chunk_len = handle.read(4), int.from_bytes(handle.read(4), "little")
        if not (chunk_id.isascii() and chunk_id.strip(b" ").isalnum()) or offset + 8 + \
                chunk_len > size:
            raise EMOInputError(
                f"audio file {path} has a damaged header: it announces {length:,} bytes of "
                f"samples but {size - start:,} follow; re-export the WAV (or convert it to "
                "flac) so the header matches the audio")
        offset += 8 + chunk_len + (chunk_len & 1)


def _decode_stream(av, container, stream) -> tuple[list[np.ndarray], int | None]:
    """All frames of ``stream`` as planar float32 chunks ``(C, n)``; keeps rate and layout."""
    # format only: layout/rate None keep the stream's own, so nothing is mixed or resampled here.
    resampler = av.AudioResampler(format="fltp")
    chunks: list[np.ndarray] = []
    rate = None
    for frame in container.decode(stream):
        rate = frame.sample_rate
        for converted in resampler.resample(frame):
            chunks.append(converted.to_ndarray().astype(np.float32, copy=False))
    for converted in resampler.resample(None):  # flush what the resampler still buffers
        chunks.append(converted.to_ndarray().astype(np.float32, copy=False))
    return chunks, rate


def to_mono_16k(waveform, sample_rate) -> torch.Tensor:
    """Mix to mono and resample to 16 kHz.

    ``waveform``: ``(T,)``, ``(C, T)`` or ``(1, C, T)`` torch tensor or numpy array.
    Returns ``(T16,)`` float32 CPU, ``T16 = ceil(T * 16000 / sample_rate)`` (torchaudio's length).
    """
    rate = check_sample_rate(sample_rate)
    channels = _replace_non_finite(_as_channels_first(waveform))
    _check_peak(channels, "input")
    if rate == TARGET_RATE:
        return _mix(channels).contiguous()
    _check_resample_cost(rate)
    return resample_in_blocks(channels, rate)


def _mix(channels: torch.Tensor) -> torch.Tensor:
    """``(C, n) -> (n,)`` channel average (a view when mono)."""
    return channels.mean(dim=0) if channels.shape[0] > 1 else channels[0]


def resample_in_blocks(channels: torch.Tensor, rate: int, block: int = 1 << 20) -> torch.Tensor:
    """Mix and resample ``(C, T)`` at ``rate`` to ``(ceil(T * 16000 / rate),)`` at 16 kHz.

    Same result as one ``torchaudio.functional.resample`` call on the whole mono mix, but block by
    block (about ``block`` input samples each), so a 10-minute 44.1 kHz stereo clip needs no
    whole-length temporaries. torchaudio's polyphase filter maps every ``orig`` input samples to
    ``new`` output samples (rates reduced by their gcd) and reads ``width`` samples around them;
    blocks start on multiples of ``orig`` and carry a margin of more than ``width + orig`` samples,
    so each kept output sample sees exactly the inputs it sees in the one-shot call.
    """
    import torchaudio.functional as AF  # heavy import; only needed when resampling

    g = math.gcd(rate, TARGET_RATE)
    orig, new = rate // g, TARGET_RATE // g
    width = math.ceil(_LOWPASS_WIDTH * orig / (0.99 * min(orig, new))) + 1  # 0.99: rolloff
    margin = orig * (math.ceil(width / orig) + 2)
    block = max(orig, block // orig * orig)
    total = channels.shape[1]
    out = torch.empty(math.ceil(new * total / orig))
    for start in range(0, total, block):
        end = min(start + block, total)
        lo, hi = max(0, start - margin), min(total, end + margin)
        part = AF.resample(_mix(channels[:, lo:hi]), orig_freq=rate, new_freq=TARGET_RATE)
        first = start // orig * new  # start and lo are multiples of orig (or 0)
        last = out.shape[0] if end == total else end // orig * new
        offset = lo // orig * new
        out[first:last] = part[first - offset:last - offset]
    return out


def check_sample_rate(sample_rate) -> int:
    """Sample rates must be positive whole numbers of Hz (torchaudio resamples by integer ratio)."""
    try:
        value = float(sample_rate)
    except (TypeError, ValueError) as err:
        raise EMOInputError(
            f"audio sample rate {sample_rate!r} is not a number; pass the rate in Hz") from err
    if not math.isfinite(value) or value <= 0 or value != int(value):
        raise EMOInputError(
            f"audio sample rate {sample_rate!r} is invalid; expected a positive whole number of Hz "
            "such as 16000 or 44100")
    return int(value)


def _check_resample_cost(rate: int) -> None:
    g = math.gcd(rate, TARGET_RATE)
    orig, new = rate // g, TARGET_RATE // g
    width = math.ceil(_LOWPASS_WIDTH * orig / min(orig, new))
    if new * (2 * width + orig) > MAX_SINC_KERNEL:
        raise EMOInputError(
            f"audio sample rate {rate} Hz has no small ratio to 16000 Hz and cannot be resampled "
            "efficiently; convert the audio to a standard rate (8000, 11025, 16000, 22050, 44100 "
            "or 48000 Hz) first")


def _as_channels_first(waveform) -> torch.Tensor:
    """``(T,) | (C, T) | (1, C, T)`` tensor/array -> ``(C, T)`` float32 CPU tensor."""
    tensor = waveform if isinstance(waveform, torch.Tensor) else _from_array(waveform)
    shape = tuple(tensor.shape)
    if tensor.ndim == 3:
        if shape[0] != 1:
            raise EMOInputError(
                f"audio batch has {shape[0]} clips (shape {shape}); pass one clip at a time "
                "(batch size 1)")
        tensor = tensor[0]
    elif tensor.ndim == 1:
        tensor = tensor[None]
    elif tensor.ndim != 2:
        raise EMOInputError(
            f"audio has shape {shape}; expected (samples,), (channels, samples) or ComfyUI AUDIO "
            "(1, channels, samples). A 4-D tensor is usually an IMAGE connected by mistake")
    if tensor.shape[0] > MAX_CHANNELS:
        raise EMOInputError(
            f"audio has {tensor.shape[0]} channels (shape {shape}); expected at most "
            f"{MAX_CHANNELS} in (channels, samples) order. If it is (samples, channels), "
            "transpose it")
    if tensor.numel() == 0:
        raise EMOInputError(f"audio is empty: shape {shape} has no samples; use a clip with sound")
    return _to_float32(tensor.detach().cpu(), shape)


def _from_array(waveform) -> torch.Tensor:
    try:
        return torch.from_numpy(np.ascontiguousarray(waveform))
    except (TypeError, ValueError) as err:
        raise EMOInputError(
            f"audio of type {type(waveform).__name__} is not a tensor or array of samples; pass a "
            "torch tensor or numpy array") from err


def _to_float32(tensor: torch.Tensor, shape: tuple) -> torch.Tensor:
    """Float stays as is; integer PCM is scaled to -1..1."""
    if tensor.is_floating_point():
        return tensor.float()
    scale = {torch.int16: 32768.0, torch.int32: 2.0**31, torch.int8: 128.0}
    if tensor.dtype in scale:
        return tensor.float() / scale[tensor.dtype]
    if tensor.dtype == torch.uint8:
        return (tensor.float() - 128.0) / 128.0
    raise EMOInputError(
        f"audio samples have type {tensor.dtype} (shape {shape}); expected float or integer PCM")


def _replace_non_finite(channels: torch.Tensor) -> torch.Tensor:
    """NaN/inf -> 0 with a warning; all non-finite -> EMOInputError.  ``channels: (C, T)``.

    Checked in blocks: ``torch.isfinite`` on a whole 10-minute clip allocates several copies.
    The input is never modified; a copy is made only when something must be replaced.
    """
    flat = channels.reshape(-1)
    bad = sum(int(flat[i:i + _BLOCK].numel() - torch.isfinite(flat[i:i + _BLOCK]).sum())
              for i in range(0, flat.numel(), _BLOCK))
    if bad == 0:
        return channels
    if bad == channels.numel():
        raise EMOInputError(
            f"audio has no finite samples (all {bad} are NaN or infinite); the clip is corrupt, "
            "re-export or re-decode it")
    logger.warning("audio has %d NaN/infinite samples out of %d; replacing them with 0 (silence)",
                   bad, channels.numel())
    return torch.nan_to_num(channels, nan=0.0, posinf=0.0, neginf=0.0)


SILENCE_PEAK = 10 ** (-80 / 20)  # -80 dBFS: below any real recording's noise floor


def check_not_silent(waveform, source, allow_silence: bool = False) -> None:
    """Refuse a completely silent clip: EMO animates speech or song, and silence almost always
    means a wrong file or a muted track. ``allow_silence`` generates anyway (a near-still face)."""
    wave = torch.as_tensor(waveform)
    peak = float(wave.abs().max()) if wave.numel() else 0.0
    if peak < SILENCE_PEAK and not allow_silence:
        raise EMOInputError(
            f"audio {source} is silent (peak {peak:.2e}, below -80 dBFS); EMO needs speech or "
            "singing to animate. Check the file/track, or allow silence to get a still face."
        )
