"""The pieces of a transformers ``Wav2Vec2Model`` run one by one, so features can be resampled
to the video frame rate between the CNN and the transformer (as Hallo does) and long audio can be
processed chunk by chunk.

- ``ConvFrontEnd``: ``wav2vec.feature_extractor`` (the 50 Hz CNN) over any range of its output
  frames. wav2vec2-base ("group" feature norm) normalises its first conv layer with a GroupNorm over
  the *whole* sequence; for chunks, those statistics are computed once over the full utterance in a
  streaming pass and applied to every chunk, so chunked CNN features equal one-shot ones.
- ``interpolate_frames``: linear interpolation at explicit positions (``align_corners=True``
  geometry of Hallo's ``F.interpolate``), so a chunk reproduces the global interpolation exactly.
- ``encode_layers``: ``feature_projection`` -> ``encoder``; every transformer layer's output is
  captured with forward hooks (works for both encoder variants and transformers 4.x and 5.x).
"""

from __future__ import annotations

import math

import torch


def conv_geometry(config) -> tuple[int, int]:
    """``(total_stride, receptive_field)`` in samples of the wav2vec2 CNN (320, 400 for base)."""
    stride, field = 1, 1
    layers = list(zip(config.conv_kernel, config.conv_stride, strict=True))
    for kernel, step in reversed(layers):
        field = (field - 1) * step + kernel
        stride *= step
    return stride, field


def conv_output_length(config, num_samples: int) -> int:
    """Number of CNN frames for ``num_samples`` input samples (no padding in wav2vec2 convs)."""
    length = num_samples
    for kernel, step in zip(config.conv_kernel, config.conv_stride, strict=True):
        length = (length - kernel) // step + 1
    return max(length, 0)


def frame_positions(num_frames: int, num_cnn: int, start: int, end: int) -> torch.Tensor:
    """CNN-frame positions of video frames ``[start, end)`` -> ``(end - start,)`` float64.

    ``align_corners=True``: frame 0 sits on CNN frame 0 and frame ``F-1`` on CNN frame ``N-1``.
    """
    index = torch.arange(start, end, dtype=torch.float64)
    if num_frames == 1:
        return index * 0.0
    return index * ((num_cnn - 1) / (num_frames - 1))


def interpolate_frames(features: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Linear interpolation along time.

    ``features``: ``(n, c)``; ``positions``: ``(m,)`` float64 in ``[0, n-1]`` -> ``(m, c)``.
    """
    last = features.shape[0] - 1
    left = positions.floor().clamp(0, last)
    weight = (positions - left).to(features.dtype)[:, None]
    left = left.long()
    right = (left + 1).clamp(max=last)
    return torch.lerp(features[left], features[right], weight)


class ConvFrontEnd:
    """Chunked ``wav2vec.feature_extractor``.  ``frames(lo, hi) -> (hi - lo + 1, conv_dim)``.

    ``global_norm``: use whole-utterance GroupNorm statistics (needed when chunking), computed
    over blocks of at most ``block_samples`` samples so memory stays bounded by the chunk size.
    """

    def __init__(self, wav2vec, signal, device, dtype, global_norm: bool,
                 block_samples: int = 1 << 20):
        self.layers = wav2vec.feature_extractor.conv_layers
        self.config = wav2vec.config
        self.signal = signal
        self.device, self.dtype = device, dtype
        self.stride, self.field = conv_geometry(self.config)
        self.num_frames = conv_output_length(self.config, signal.length)
        self.block_samples = max(int(block_samples), self.field)
        uses_group_norm = getattr(self.config, "feat_extract_norm", "layer") == "group"
        # (mean, inv_std) per channel of the first conv layer, or None: the module's own norm.
        self.first_norm = self._first_layer_stats() if global_norm and uses_group_norm else None

    def frames(self, lo: int, hi: int) -> torch.Tensor:
        """CNN frames ``lo..hi`` (inclusive) from samples ``[stride*lo, stride*hi + field)``."""
        if lo == 0 and hi == self.num_frames - 1:
            samples = self.signal.segment(0, self.signal.length)  # exactly the one-shot input
        else:
            samples = self.signal.segment(self.stride * lo, self.stride * hi + self.field)
        hidden = samples.to(self.device, self.dtype)[None, None]  # (1, 1, samples)
        if self.first_norm is None:
            hidden = _run(self.layers, hidden)
        else:
            hidden = _run(self.layers[1:], self._first_layer(hidden))
        return hidden[0].transpose(0, 1)  # (frames, conv_dim)

    def _first_layer(self, hidden: torch.Tensor) -> torch.Tensor:
        """First conv layer, whole-utterance GroupNorm statistics. ``(1, 1, s) -> (1, c, n)``."""
        layer = self.layers[0]
        mean, inv_std = self.first_norm
        out = layer.conv(hidden).float()
        out = (out - mean[:, None]) * inv_std[:, None]
        norm = layer.layer_norm
        out = out * norm.weight.float()[:, None] + norm.bias.float()[:, None]
        return layer.activation(out.to(self.dtype))

    def _first_layer_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel GroupNorm ``(mean, inv_std)`` of the first conv layer over all samples."""
        conv = self.layers[0].conv
        kernel, step = conv.kernel_size[0], conv.stride[0]
        total = (self.signal.length - kernel) // step + 1
        per_block = max(1, (self.block_samples - kernel) // step + 1)  # conv outputs per block
        count, mean, m2 = 0, None, None
        for first in range(0, total, per_block):
            last = min(first + per_block, total)  # outputs [first, last)
            samples = self.signal.segment(step * first, step * (last - 1) + kernel)
            out = conv(samples.to(self.device, self.dtype)[None, None])[0].float()  # (c, n)
            n = out.shape[1]
            block_var, block_mean = torch.var_mean(out, dim=1, correction=0)  # no big temporaries
            block_mean, block_m2 = block_mean.double().cpu(), block_var.double().cpu() * n
            if mean is None:
                count, mean, m2 = n, block_mean, block_m2
                continue
            # Chan et al. parallel variance: merge block statistics without a float64 copy.
            delta = block_mean - mean
            merged = count + n
            mean = mean + delta * (n / merged)
            m2 = m2 + block_m2 + delta**2 * (count * n / merged)
            count = merged
        return self._group_stats(mean, m2 / count)

    def _group_stats(self, mean: torch.Tensor, var: torch.Tensor):
        """Channel statistics -> GroupNorm statistics (groups pool equal-sized channel sets)."""
        norm = self.layers[0].layer_norm
        groups = norm.num_groups
        group_mean = mean.view(groups, -1).mean(dim=1, keepdim=True)
        group_var = (var.view(groups, -1) + (mean.view(groups, -1) - group_mean) ** 2).mean(
            dim=1, keepdim=True)
        channels = mean.shape[0]
        mean_c = group_mean.expand(groups, channels // groups).reshape(channels)
        inv_c = (1.0 / torch.sqrt(group_var + norm.eps)).expand(groups, channels // groups)
        return (mean_c.float().to(self.device), inv_c.reshape(channels).float().to(self.device))


def _run(layers, hidden: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        hidden = layer(hidden)
    return hidden


def encode_layers(wav2vec, conv_features: torch.Tensor) -> torch.Tensor:
    """``conv_features: (n, conv_dim)`` -> every transformer layer's output ``(n, L, C)``.

    Equals ``torch.stack(wav2vec(x, output_hidden_states=True).hidden_states[1:])`` per frame
    when ``conv_features`` are the model's own CNN features.
    """
    hidden, _ = wav2vec.feature_projection(conv_features[None])
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

    hooks = [layer.register_forward_hook(keep) for layer in wav2vec.encoder.layers]
    try:
        wav2vec.encoder(hidden)
    finally:
        for hook in hooks:
            hook.remove()
    expected = len(wav2vec.encoder.layers)
    if len(captured) != expected:
        raise RuntimeError(f"captured {len(captured)} wav2vec layer outputs, expected {expected}")
    return torch.stack(captured, dim=2)[0]


def cnn_range(positions: torch.Tensor, num_cnn: int) -> tuple[int, int]:
    """Inclusive CNN-frame range an interpolation at ``positions`` reads."""
    lo = int(math.floor(float(positions[0])))
    hi = min(int(math.ceil(float(positions[-1]))), num_cnn - 1)
    return max(lo, 0), max(hi, lo)
