"""FLOP counting shared by the FLOPs benchmarks (``bench_flops``, ``bench_hallo_flops``).

Count on the meta device: with torch 2.9.1, ``FlopCounterMode`` counts 0 for
``scaled_dot_product_attention`` on CPU tensors (the fused kernel is invisible to it); on meta,
and on CPU with the math SDPA backend forced, attention is counted as its matmuls.
"""

from __future__ import annotations

from torch.utils.flop_counter import FlopCounterMode


def count(fn) -> tuple[float, dict]:
    """Run ``fn()`` under a FLOP counter: (total GFLOP, per-module counts as torch reports them,
    keyed ``"Class"`` / ``"Class.child"`` for modules called from outside any counted parent)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9, counter.get_flop_counts()


def module_gflop(counts: dict, name: str) -> float:
    """GFLOP recorded under one key of :func:`count`'s per-module counts (0 when absent)."""
    return sum(counts.get(name, {}).values()) / 1e9

