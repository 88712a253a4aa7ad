"""Classifier-free guidance with separate reference and audio scales.

Branches are batch rows of one Backbone forward:

- ``separate`` (3 rows): u = no reference, no audio; r = reference only; ra = reference + audio;
  ``eps = u + s_ref (r - u) + s_aud (ra - r)``.
- ``joint`` (2 rows): u and ra; ``eps = u + s (ra - u)``.
- scales that make a branch irrelevant drop it (both scales 1 -> only ra is run), so guidance
  never costs more forwards than its formula needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GuidancePlan:
    """Which rows to run and how to mix them.

    ``reference_rows`` / ``audio_rows``: ``(b,)`` bool masks for the Backbone; ``weights``: ``(b,)``
    so that ``eps = sum_i weights[i] * eps_i`` (the formulas above are linear in the branches).
    """

    reference_rows: torch.Tensor
    audio_rows: torch.Tensor
    weights: torch.Tensor

    @property
    def batch(self) -> int:
        return int(self.weights.shape[0])

    def combine(self, eps: torch.Tensor) -> torch.Tensor:
        """``eps: (b, f, c, h, w)`` -> ``(1, f, c, h, w)``."""
        if eps.shape[0] != self.batch:
            raise ValueError(f"eps has {eps.shape[0]} rows, guidance plan expects {self.batch}")
        weights = self.weights.to(device=eps.device, dtype=eps.dtype).view(-1, 1, 1, 1, 1)
        return (weights * eps).sum(dim=0, keepdim=True)


def plan_guidance(mode: str, scale_reference: float, scale_audio: float) -> GuidancePlan:
    """Rows ordered (u, r, ra) with the branches that carry weight only."""
    if mode == "joint":
        rows = {"u": 1.0 - scale_reference, "ra": scale_reference}
    elif mode == "separate":
        # u + s_ref (r - u) + s_aud (ra - r) = (1 - s_ref) u + (s_ref - s_aud) r + s_aud ra
        rows = {"u": 1.0 - scale_reference, "r": scale_reference - scale_audio, "ra": scale_audio}
    else:
        raise ValueError(f"guidance mode must be 'separate' or 'joint', got {mode!r}")
    kept = [(name, w) for name, w in rows.items() if w != 0.0 or name == "ra"]
    return GuidancePlan(
        reference_rows=torch.tensor([name != "u" for name, _ in kept]),
        audio_rows=torch.tensor([name == "ra" for name, _ in kept]),
        weights=torch.tensor([w for _, w in kept], dtype=torch.float64),
    )
