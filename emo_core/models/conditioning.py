"""Per-call conditioning that travels with a UNet call, never stored on modules.

``EMOBackbone`` and ``ReferenceNet`` call their diffusers UNet with
``cross_attention_kwargs={"emo": call}``. diffusers hands ``cross_attention_kwargs`` to every
spatial transformer (``Transformer2DModel``) and, inside it, as ``**kwargs`` to ``attn1`` /
``attn2`` (as it does for IP-Adapter inputs); the motion-block wrappers (``motion_blocks.py``)
take it for the blocks without attention. Because the conditioning is an argument, diffusers'
per-block gradient checkpointing recomputes with the same inputs, ``torch.compile`` traces it
as graph inputs, and attention-processor swaps cannot lose it.

Row groups (guidance branches, condition dropout) are static Python structures decided before
the call (``Runs``), so no ``nonzero()`` or data-dependent indexing happens inside the UNet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

KEY = "emo"  # the cross_attention_kwargs key

# A run of consecutive rows that share a flag: (start, stop, flag), in sample rows (b).
Runs = tuple[tuple[int, int, bool], ...]


def as_flags(name: str, rows, batch: int) -> tuple[bool, ...] | None:
    """``rows``: None, a ``(b,)`` bool tensor or a sequence of bools -> a tuple of Python bools.

    Tensors are read with ``.tolist()`` here, at the API edge, outside the UNet call."""
    if rows is None:
        return None
    if isinstance(rows, torch.Tensor):
        if rows.shape != (batch,) or rows.dtype != torch.bool:
            raise ValueError(f"{name} must be a ({batch},) bool tensor, got "
                             f"{tuple(rows.shape)} {rows.dtype}")
        return tuple(bool(r) for r in rows.tolist())
    flags = tuple(rows)
    if len(flags) != batch or not all(isinstance(r, bool) for r in flags):
        raise ValueError(f"{name} must be a ({batch},) bool tensor or {batch} bools, got {rows!r}")
    return flags


def runs_of(flags: Sequence[bool] | None, batch: int) -> Runs:
    """``(True, True, False)`` -> ``((0, 2, True), (2, 3, False))``; None -> all True."""
    flags = (True,) * batch if flags is None else tuple(flags)
    runs: list[tuple[int, int, bool]] = []
    for i, flag in enumerate(flags):
        if runs and runs[-1][2] == flag:
            runs[-1] = (runs[-1][0], i + 1, flag)
        else:
            runs.append((i, i + 1, flag))
    return tuple(runs)


def apply_runs(hidden: torch.Tensor, runs: Runs, frames: int, on, off=None) -> torch.Tensor:
    """Apply ``on(rows, start, stop)`` to the frame rows of every True run and ``off`` (default:
    unchanged) to the others; ``hidden: (b*f, ...)``, runs in sample rows; results concatenated.

    A single run is one call on the whole tensor (no slicing, no copy)."""
    if len(runs) == 1:
        start, stop, flag = runs[0]
        fn = on if flag else off
        return hidden if fn is None else fn(hidden, start * frames, stop * frames)
    parts = []
    for start, stop, flag in runs:
        rows = hidden[start * frames:stop * frames]
        fn = on if flag else off
        parts.append(rows if fn is None else fn(rows, start * frames, stop * frames))
    return torch.cat(parts)


@dataclasses.dataclass(frozen=True)
class HalloInputs:
    """Hallo variant: ``masks`` (full, face, lip) lists of ``(b*f, h*w)`` per level (or None
    without audio), ``motion_scale`` 3 floats, ``motion_mode`` "train" | "eval"."""

    masks: tuple | None
    motion_scale: tuple[float, float, float]
    motion_mode: str


@dataclasses.dataclass(frozen=True)
class BackboneCall:
    """Conditioning of one Backbone forward; per-frame tensors already ``(b*f, ...)``.

    ``bank``: attn1 name -> reference tokens ``(b, L, c)`` (or ``(b*f, L, c)``);
    ``reference_runs`` / ``audio_runs``: which sample rows read the reference / the audio;
    ``motion``: one ``(b, n, c, h, w)`` per temporal site, or None (``zero_motion`` zeros);
    ``face``: ``(b*f, C0, h, w)`` added after ``conv_in``.
    """

    frames: int
    batch: int
    bank: dict[str, torch.Tensor]
    reference_runs: Runs
    audio: torch.Tensor | None
    audio_runs: Runs
    speed: torch.Tensor | None
    motion: tuple[torch.Tensor, ...] | None
    zero_motion: int = 0  # without motion features: this many zero motion frames per site
    hallo: HalloInputs | None = None
    # attn1 name -> precomputed reference (keys, values), each (b, L, inner); see ReferenceFeatures
    kv: dict[str, tuple[torch.Tensor, torch.Tensor]] = dataclasses.field(default_factory=dict)

    def reference_tokens(self, name: str, rows: int) -> torch.Tensor | None:
        """Bank tokens for ``name`` repeated per frame: ``(rows = b*f, L, c)``, or None."""
        tokens = self.bank.get(name)
        if tokens is None:
            return None
        return self.per_frame(name, tokens, rows)

    def reference_kv(self, name: str, rows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Precomputed reference keys and values for ``name``, per frame: ``(rows, L, inner)``."""
        kv = self.kv.get(name)
        if kv is None:
            return None
        return self.per_frame(name, kv[0], rows), self.per_frame(name, kv[1], rows)

    def per_frame(self, name: str, tokens: torch.Tensor, rows: int) -> torch.Tensor:
        """``(b, L, c)`` repeated per frame -> ``(rows = b*f, L, c)``; ``(b*f, L, c)`` as given."""
        if tokens.shape[0] * self.frames == rows:
            if self.frames == 1:
                return tokens
            return tokens.repeat_interleave(self.frames, dim=0)
        if tokens.shape[0] != rows:  # (b*f, L, c): per-frame tokens are taken as given
            raise ValueError(
                f"reference tokens for {name} have batch {tokens.shape[0]} but the Backbone runs "
                f"{rows} rows = batch x {self.frames} frames; expected batch "
                f"{rows // max(self.frames, 1)} (or {rows} per-frame rows)")
        return tokens


@dataclasses.dataclass
class ReferenceSink:
    """Output holder of one ReferenceNet call (filled during the call, read after it):
    ``bank``: attn1 name -> input tokens of the first ``rows`` rows (None: every row);
    ``motion``: per temporal site, the rows after ``rows`` (motion frames), or None."""

    rows: int | None
    bank: dict[str, torch.Tensor]
    motion: list[torch.Tensor | None] | None


def call_of(kwargs: dict | None):
    """The EMO conditioning inside a ``cross_attention_kwargs`` dict, or None."""
    if not kwargs:
        return None
    return kwargs.get(KEY)
