"""tqdm progress bar on stderr as a pipeline ``progress(done, total)`` callback."""

from __future__ import annotations

import sys


class TqdmProgress:
    def __init__(self, desc: str = "denoising"):
        self.desc = desc
        self.bar = None

    def __enter__(self) -> TqdmProgress:
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm  # imported on first use: --help must not pay for it

            self.bar = tqdm(total=total, desc=self.desc, unit="step", file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
