"""Whisper's log-mel spectrogram, computed as openai-whisper's ``log_mel_spectrogram`` does.

16 kHz mono waveform -> STFT (n_fft 400, hop 160, periodic Hann window, ``torch.stft`` with
``center=True`` and reflect padding) -> the last frame dropped -> power ``|X|^2`` -> 80 mel
filters (librosa's Slaney-style filters for sr 16000 / n_fft 400, what whisper ships as
``mel_filters.npz``; built here with transformers' ``mel_filter_bank``, which matches librosa)
-> ``log10(max(x, 1e-10))`` -> ``max(x, global max - 8)`` -> ``(x + 4) / 4``.

The ``global max`` is over the whole waveform, so a long clip is transformed in one piece (80
floats per 10 ms: an hour is ~115 MB) and then cut into 30 s encoder segments.
"""

from __future__ import annotations

import functools

import torch

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
MEL_FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100
SEGMENT_FRAMES = 3000  # the encoder's fixed input: 30 s of mel frames


@functools.lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80) -> torch.Tensor:
    """``(n_mels, n_fft // 2 + 1)`` float32 mel filter bank (librosa defaults, Slaney norm)."""
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=n_mels,
                           min_frequency=0.0, max_frequency=SAMPLE_RATE / 2,
                           sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    return torch.from_numpy(bank.T.copy()).to(torch.float32)


def log_mel_spectrogram(waveform: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """``waveform: (T,)`` float, 16 kHz mono -> ``(n_mels, T // 160)`` log-mel (float32)."""
    if waveform.ndim != 1 or not waveform.is_floating_point():
        raise ValueError(f"waveform must be a 1-D float tensor, got {tuple(waveform.shape)} "
                         f"{waveform.dtype}")
    audio = waveform.to(torch.float32)
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = mel_filters(n_mels).to(audio.device) @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0
