"""Optional vocal separation before wav2vec, as Hallo does it: an MDX-Net ONNX model (``Kim_Vocal_2``).

Hallo runs audio-separator's MDX separator (defaults: hop 1024, segment size 256 = the model's
``dim_t``, overlap 0.25, batch 1, no denoise) with ``Kim_Vocal_2.onnx`` (n_fft 7680, dim_f 3072,
compensate 1.009, primary stem = vocals) and feeds the vocals to wav2vec. The same steps here:

1. the clip is made stereo (mono duplicated) and resampled to 44.1 kHz; peak-normalised to 0.9
   when louder;
2. it is padded by ``trim = n_fft / 2`` zeros in front and up to whole ``gen_size`` blocks behind,
   cut into chunks of ``hop * (dim_t - 1)`` samples every ``(1 - overlap) * chunk`` samples;
3. per chunk: STFT (periodic Hann, centred) -> (1, 4, dim_f, dim_t) = [L real, L imag, R real,
   R imag] of the lowest ``dim_f`` bins, the first 3 bins zeroed -> model -> inverse STFT;
4. chunks are overlap-added with a symmetric Hann window and divided by the summed windows; the
   trim and the padding are cut off, the vocals scaled by ``compensate`` and peak-normalised to
   0.9 when louder;
5. mixed to mono and resampled to 16 kHz (Hallo writes a 16-bit file, resamples it with ffmpeg and
   reads it back mono: the same numbers up to 16-bit rounding and the resampler's filter).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import EMOInputError
from ..onnx_session import open_session
from .waveform import (
    TARGET_RATE,
    _as_channels_first,
    _replace_non_finite,
    check_sample_rate,
    to_mono_16k,
)

logger = logging.getLogger(__name__)

SEPARATION_RATE = 44_100
MODEL_FILE = "Kim_Vocal_2.onnx"
MODEL_HINT = (
    f"put {MODEL_FILE} in ComfyUI's models/audio_separator/ (Hallo's layout: "
    f"pretrained_models/audio_separator/{MODEL_FILE}); it is in the Hugging Face repository "
    "fudan-generative-ai/hallo, folder audio_separator. Or turn vocal separation off."
)


@dataclass(frozen=True)
class MDXParams:
    """MDX-Net settings; the defaults are audio-separator's for ``Kim_Vocal_2.onnx``."""

    n_fft: int = 7680
    hop: int = 1024
    dim_f: int = 3072
    dim_t: int = 256
    compensate: float = 1.009
    overlap: float = 0.25
    max_peak: float = 0.9  # audio-separator's normalization_threshold

    @property
    def trim(self) -> int:
        return self.n_fft // 2

    @property
    def chunk(self) -> int:
        return self.hop * (self.dim_t - 1)

    @property
    def gen_size(self) -> int:
        return self.chunk - 2 * self.trim


def load_separator(model_path, providers=None):
    """onnxruntime session for an MDX-Net model file, or an EMOInputError naming what to do."""
    path = Path(model_path) if model_path is not None else None
    if path is not None and path.is_dir():
        path = path / MODEL_FILE
    if path is None or not path.is_file():
        raise EMOInputError(f"vocal separation model {str(path)!r} not found; {MODEL_HINT}")
    return open_session(path, "vocal separation model", MODEL_HINT, providers)


def _check_model(session, params: MDXParams) -> None:
    shape = session.get_inputs()[0].shape
    expected = (4, params.dim_f, params.dim_t)
    static = tuple(d if isinstance(d, int) else None for d in shape[1:])
    if len(shape) != 4 or any(s is not None and s != e for s, e in zip(static, expected, strict=False)):
        raise EMOInputError(
            f"vocal separation model takes input {shape}, expected (batch, 4, {params.dim_f}, "
            f"{params.dim_t}) (an MDX-Net model with Kim_Vocal_2's settings); use {MODEL_FILE}."
        )


def _spectrum(chunk: torch.Tensor, params: MDXParams, window: torch.Tensor) -> np.ndarray:
    """(2, chunk) -> (1, 4, dim_f, dim_t) float32 [L re, L im, R re, R im], bins 0..2 zeroed."""
    spec = torch.stft(chunk, params.n_fft, params.hop, window=window, center=True,
                      return_complex=True)[:, :params.dim_f]
    parts = torch.stack([spec.real, spec.imag], dim=1).reshape(1, 4, params.dim_f, -1)
    parts[:, :, :3] = 0
    return parts.numpy()


def _waveform(spec: np.ndarray, params: MDXParams, window: torch.Tensor) -> torch.Tensor:
    """(1, 4, dim_f, dim_t) model output -> (2, chunk) by inverse STFT (missing bins = 0)."""
    spec = torch.from_numpy(np.asarray(spec, dtype=np.float32)).reshape(2, 2, params.dim_f, -1)
    full = torch.zeros(2, params.n_fft // 2 + 1, spec.shape[-1], dtype=torch.complex64)
    full[:, :params.dim_f] = torch.complex(spec[:, 0], spec[:, 1])
    return torch.istft(full, params.n_fft, params.hop, window=window, center=True)


def demix(mix: np.ndarray, session, params: MDXParams = MDXParams()) -> np.ndarray:
    """(2, T) float 44.1 kHz -> (2, T) float32 model output, chunked and overlap-added (no
    compensation or normalisation)."""
    total = mix.shape[1]
    pad = params.gen_size + params.trim - total % params.gen_size
    mixture = np.concatenate([np.zeros((2, params.trim), np.float32), mix.astype(np.float32),
                              np.zeros((2, pad), np.float32)], axis=1)
    length = mixture.shape[1]
    step = int((1 - params.overlap) * params.chunk)
    result = np.zeros((2, length), np.float64)
    weight = np.zeros(length, np.float64)
    stft_window = torch.hann_window(params.n_fft, periodic=True)
    name = session.get_inputs()[0].name
    for start in range(0, length, step):
        end = min(start + params.chunk, length)
        part = np.zeros((2, params.chunk), np.float32)
        part[:, :end - start] = mixture[:, start:end]
        output = session.run(None, {name: _spectrum(torch.from_numpy(part), params, stft_window)})[0]
        wave = _waveform(output, params, stft_window).numpy()[:, :end - start]
        window = np.hanning(end - start) if params.overlap else np.ones(end - start)
        result[:, start:end] += wave * window
        weight[start:end] += window
    # positions no window reaches (a window's zero end points) are all inside the trimmed margins
    safe = np.where(weight > 0, weight, 1.0)
    return (result / safe)[:, params.trim:params.trim + total].astype(np.float32)


def _peak_limit(wave: np.ndarray, max_peak: float) -> np.ndarray:
    peak = float(np.abs(wave).max(initial=0.0))
    return wave * (max_peak / peak) if peak > max_peak else wave


def _stereo_44k(waveform, sample_rate) -> np.ndarray:
    """Any accepted clip layout -> (2, T44) float32 at 44.1 kHz (mono duplicated, > 2 channels
    mixed down to mono first)."""
    rate = check_sample_rate(sample_rate)
    channels = _replace_non_finite(_as_channels_first(waveform))
    if channels.shape[0] != 2:
        channels = channels.mean(dim=0, keepdim=True).repeat(2, 1)
    if rate != SEPARATION_RATE:
        import torchaudio.functional as AF  # heavy import; only needed when resampling

        channels = AF.resample(channels, orig_freq=rate, new_freq=SEPARATION_RATE)
    return channels.numpy()


def separate_vocals(waveform, sample_rate, model_path, params: MDXParams = MDXParams(),
                    session=None) -> tuple[torch.Tensor, int]:
    """Vocals of a clip as Hallo extracts them before wav2vec.

    waveform: (T,), (C, T) or (1, C, T) at ``sample_rate``; model_path: ``Kim_Vocal_2.onnx`` or
    its folder (ignored when an onnxruntime ``session`` is given).
    Returns ``((T16,) float32 mono vocals at 16 kHz, 16000)``.
    """
    session = session if session is not None else load_separator(model_path)
    _check_model(session, params)
    mix = _peak_limit(_stereo_44k(waveform, sample_rate), params.max_peak)
    vocals = demix(mix, session, params) * params.compensate
    vocals = _peak_limit(vocals, params.max_peak).astype(np.float32)
    logger.info("vocal separation: %.1f s of audio through %s", mix.shape[1] / SEPARATION_RATE,
                Path(str(model_path)).name if model_path is not None else "the given session")
    return to_mono_16k(torch.from_numpy(vocals), SEPARATION_RATE), TARGET_RATE
