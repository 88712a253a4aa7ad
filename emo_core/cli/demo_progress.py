"""One progress bar for a whole demo run, shown from its first second.

The bar runs 0..100 %: the stages before sampling (imports, weights, face, audio, model loading)
fill the first ``PREPARE`` percent one step each, denoising fills the rest in proportion to the
steps done, so the bar moves during the long part and never goes backwards. The description names
the current stage. tqdm is imported on entry (light); nothing else heavy is.
"""

from __future__ import annotations

import sys

PREPARE = 20  # percent of the bar for the stages before denoising
STAGE_STEP = 4  # percent per preparation stage (at most PREPARE in total)


class DemoProgress:
    def __enter__(self) -> DemoProgress:
        from tqdm import tqdm

        self.bar = tqdm(total=100, desc="demo: starting", unit="%", file=sys.stderr,
                        bar_format="{desc:<40} {percentage:3.0f}%|{bar}| {elapsed}")
        return self

    def stage(self, name: str) -> None:
        """Enter a preparation stage: new description, a small step forward."""
        self.bar.set_description_str(f"demo: {name}")
        self._to(min(self.bar.n + STAGE_STEP, PREPARE))

    def denoising(self, done: int, total: int) -> None:
        """The pipeline's ``progress(done, total)`` callback."""
        if not self.bar.desc.endswith("denoising"):
            self.bar.set_description_str("demo: denoising")
        self._to(PREPARE + (99 - PREPARE) * done // max(total, 1))

    def finish(self) -> None:
        self.bar.set_description_str("demo: done")
        self._to(100)

    def _to(self, value: int) -> None:
        if value > self.bar.n:
            self.bar.update(value - self.bar.n)
        else:
            self.bar.refresh()

    def __exit__(self, *exc) -> None:
        self.bar.close()
