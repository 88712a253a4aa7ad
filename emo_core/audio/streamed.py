"""wav2vec feature windows computed per clip while sampling, so memory does not grow with length.

``StreamedWindows`` stands where the eager ``(F, 2m+1, L, C)`` tensor of ``AudioFeatures.windows``
stands: it has ``shape`` and ``__getitem__`` (frame indices, a slice or an int first, as the
families' ``windows[frames]``), and computes the rows a request needs from ``Wav2VecChunks``, the
chunks of the fixed global grid ``chunk_spans(F, frames_per_chunk, margin)`` that the eager path
fills its buffer with. A chunk is the same computation on the same inputs (whole-utterance
normalisation and GroupNorm statistics, computed once in streaming passes), so every streamed
row is bit-equal to the eager tensor's. It keeps the last ``hold`` chunks (2: a clip straddling a
chunk edge): clips move forward, so each chunk is computed once; asking for frames far back
recomputes theirs (correct, only slower).

What it holds: the 16 kHz signal (``NormalizedSignal``, 4 bytes per sample), the wav2vec model
(the caller's), the GroupNorm statistics, and at most ``hold`` chunks of ``(rows, L, C)`` float32
(wav2vec2-base at 25 fps, 20 s chunks: 18.4 MB each).
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from .wav2vec_parts import (
    ConvFrontEnd,
    cnn_range,
    encode_layers,
    frame_positions,
    interpolate_frames,
)


class Wav2VecChunks:
    """Chunk ``i`` of ``spans`` (``[(start, end, context_start, context_end)]``) ->
    ``(end - start, L, C)`` float32 CPU, computed by ``wav2vec`` on ``device``/``dtype``.

    ``conv``: the ``ConvFrontEnd`` (its statistics already computed); ``prepared``: a context
    manager factory putting ``wav2vec`` in eval/inference mode on ``device``/``dtype``.
    """

    def __init__(self, wav2vec, conv: ConvFrontEnd, num_frames: int, spans, prepared):
        self.wav2vec, self.conv, self.spans = wav2vec, conv, list(spans)
        self.num_frames = int(num_frames)
        self._prepared = prepared
        self.computed = 0  # chunk computations so far (tests count them)

    @property
    def frames_per_chunk(self) -> int:
        start, end = self.spans[0][:2]
        return end - start

    def chunk_of(self, rows: torch.Tensor) -> torch.Tensor:
        """Chunk index of each frame row ``(n,) -> (n,)`` (the grid is uniform)."""
        return torch.div(rows, self.frames_per_chunk, rounding_mode="floor")

    def compute(self, index: int) -> torch.Tensor:
        start, end, context_start, context_end = self.spans[index]
        with self._prepared():
            layers = encode_span(self.wav2vec, self.conv, self.num_frames, context_start,
                                 context_end)
            out = layers[start - context_start:end - context_start]
        self.computed += 1
        return out.clone()  # a normal tensor (not an inference one), only the kept rows


def encode_span(wav2vec, conv: ConvFrontEnd, num_frames: int, start: int, end: int):
    """Video frames ``[start, end)`` -> ``(end - start, L, C)`` float32 CPU."""
    positions = frame_positions(num_frames, conv.num_frames, start, end)
    lo, hi = cnn_range(positions, conv.num_frames)
    conv_features = conv.frames(lo, hi)  # (hi - lo + 1, conv_dim)
    per_frame = interpolate_frames(conv_features, positions - lo)
    return encode_layers(wav2vec, per_frame).float().cpu()


class StreamedWindows:
    """``(F, 2m+1, L, C)`` windows, edges clamped, rows computed on request.

    ``windows[frames]`` -> ``(k, 2m+1, L, C)`` float32 CPU tensor (``frames``: 1-D index tensor,
    list, slice or int; further indices apply to that tensor). ``peak_held``: the most chunks
    held at once so far.
    """

    def __init__(self, chunks: Wav2VecChunks, window: int, layers: int, channels: int,
                 hold: int = 2):
        self.chunks = chunks
        self.window = int(window)
        self.shape = torch.Size((chunks.num_frames, 2 * self.window + 1, layers, channels))
        self.hold = max(1, int(hold))
        self._held: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.peak_held = 0

    ndim = 4
    dtype = torch.float32
    device = torch.device("cpu")

    def __len__(self) -> int:
        return self.shape[0]

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def held_bytes(self) -> int:
        """Bytes of the chunks held now."""
        return sum(t.untyped_storage().nbytes() for t in self._held.values())

    def __getitem__(self, index) -> torch.Tensor:
        rest = ()
        if isinstance(index, tuple):
            index, rest = (index[0], index[1:]) if index else (slice(None), ())
        frames, squeeze = self._frame_indices(index)
        out = self._windows(frames)
        if squeeze:
            out = out[0]
        return out[(slice(None),) * (0 if squeeze else 1) + rest] if rest else out

    def contiguous(self) -> torch.Tensor:
        """Every window as one tensor (the eager result; ``2m+1`` times the features' size)."""
        return self[:]

    def _frame_indices(self, index) -> tuple[torch.Tensor, bool]:
        total = self.shape[0]
        if isinstance(index, slice):
            return torch.arange(total)[index], False
        if isinstance(index, int) and not isinstance(index, bool):
            if not -total <= index < total:
                raise IndexError(f"frame {index} out of range for {total} frames")
            return torch.tensor([index % total]), True
        frames = torch.as_tensor(index)
        if frames.dtype == torch.bool or frames.is_floating_point() or frames.ndim != 1:
            raise IndexError(f"frame indices must be a 1-D integer tensor, got {frames.dtype} "
                             f"of shape {tuple(frames.shape)}")
        frames = frames.long()
        if frames.numel() and (int(frames.min()) < -total or int(frames.max()) >= total):
            raise IndexError(f"frame indices out of range for {total} frames")
        return frames % total if total else frames, False

    def _windows(self, frames: torch.Tensor) -> torch.Tensor:
        w, total = self.window, self.shape[0]
        rows = (frames[:, None] + torch.arange(-w, w + 1)).clamp(0, total - 1)  # (k, 2w+1)
        out = torch.empty(frames.shape[0], *self.shape[1:])
        owner = self.chunks.chunk_of(rows)
        needed = [int(c) for c in torch.unique(owner)]
        for index in needed:
            part = self._chunk(index, keep=needed)
            start = self.chunks.spans[index][0]
            mask = owner == index
            out[mask] = part[rows[mask] - start]
        return out

    def _chunk(self, index: int, keep) -> torch.Tensor:
        if index in self._held:
            self._held.move_to_end(index)
            return self._held[index]
        # Make room first (never dropping a chunk this request still reads), then compute.
        while len(self._held) >= self.hold:
            victim = next((c for c in self._held if c not in keep), None)
            if victim is None:
                break
            del self._held[victim]
        part = self.chunks.compute(index)
        self._held[index] = part
        self.peak_held = max(self.peak_held, len(self._held))
        return part


__all__ = ["StreamedWindows", "Wav2VecChunks", "encode_span"]
