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


# What one denoising step does with the guidance branches (see GuidedSteps).
FULL, REUSE, OFF = "full", "reuse", "off"


def step_kinds(steps: int, start: float, end: float, refresh: int) -> tuple[str, ...]:
    """Per step (0 = noisiest): ``FULL`` inside the interval ``[start, end)`` of the steps
    (fractions, rounded to whole steps) every ``refresh``-th step from its first, ``REUSE``
    between those, ``OFF`` outside the interval."""
    low, high = round(start * steps), round(end * steps)
    return tuple(OFF if not low <= i < high else FULL if (i - low) % refresh == 0 else REUSE
                 for i in range(steps))


class GuidedSteps:
    """Guidance of one clip's denoising loop, step by step.

    A ``FULL`` step runs every branch of ``plan`` and mixes them. ``OFF`` and ``REUSE`` steps run
    the conditional row only (``ra``, always the plan's last row): ``OFF`` returns it as it is,
    ``REUSE`` adds the guidance correction ``guided - ra`` of the last ``FULL`` step. The
    correction is a fixed combination of branch differences, ``(s_ref - 1)(r - u) +
    (s_aud - 1)(ra - r)`` for separate guidance, so reusing it reuses those differences.
    Holds per-clip state: make one per clip.
    """

    def __init__(self, plan: GuidancePlan, kinds: tuple[str, ...]):
        self.full = plan
        self.kinds = kinds
        self.conditional = GuidancePlan(reference_rows=plan.reference_rows[-1:],
                                        audio_rows=plan.audio_rows[-1:],
                                        weights=torch.ones(1, dtype=torch.float64))
        self._correction: torch.Tensor | None = None

    def plan(self, step: int) -> GuidancePlan:
        """The rows to run at ``step``."""
        return self.full if self.kinds[step] == FULL else self.conditional

    def combine(self, step: int, eps: torch.Tensor) -> torch.Tensor:
        """``eps: (plan(step).batch, f, c, h, w)`` -> guided ``(1, f, c, h, w)``."""
        kind = self.kinds[step]
        guided = self.plan(step).combine(eps)
        if kind == FULL and REUSE in self.kinds[step + 1:]:
            self._correction = guided - eps[-1:]
        elif kind == REUSE:
            guided = guided + self._correction
        return guided


def rows_per_step(plan: GuidancePlan, kinds: tuple[str, ...]) -> float:
    """Mean Backbone rows per step of a schedule (the cost relative to one conditional row)."""
    return sum(plan.batch if kind == FULL else 1 for kind in kinds) / len(kinds)
