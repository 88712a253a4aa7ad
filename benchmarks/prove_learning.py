"""Proof of learning (not a timed test): train a tiny EMO on procedural talking heads through
stages 1-3 on CPU, then print lip-sync, identity, speed-control and long-video figures measured on
held-out identities and held-out audio.

    python benchmarks/prove_learning.py            # ~35-45 min on 2 CPU cores
    python benchmarks/prove_learning.py --scale 0.02 --smoke   # wiring check, ~1 min

Writes benchmarks/results/prove_learning/{proof.json, held_out_sample.mp4, tiny_emo/} (the
committed figures; pass --out elsewhere to keep them). Same as ``python -m emo_core prove-learning
--out benchmarks/results/prove_learning`` (the command alone writes to emo-output/prove-learning).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emo_core.cli.main import main  # noqa: E402

if __name__ == "__main__":
    RESULTS = Path(__file__).resolve().parent / "results" / "prove_learning"
    sys.exit(main(["prove-learning", "--out", str(RESULTS), *sys.argv[1:]]))
