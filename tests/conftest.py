"""Shared test helpers: fixture files, tiny seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"
# Copies travel with the repository so a clean clone (where ../shared may not exist) still tests.
BUNDLED = (REPO_ROOT / "emo_core" / "samples", REPO_ROOT / "emo_core" / "samples" / "mediapipe",
           REPO_ROOT / "tests" / "fixtures")


def fixture_path(name: str) -> Path:
    """Path of a fixture file: ``../shared/fixtures`` first, then the bundled copies."""
    for folder in (SHARED_FIXTURES, *BUNDLED):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"fixture {name!r} not found in {SHARED_FIXTURES} or {BUNDLED}")


@pytest.fixture
def fixtures():
    """``fixtures("portrait_astronaut.png") -> Path``."""
    return fixture_path


@pytest.fixture
def mediapipe_dir() -> Path:
    """Folder holding blaze_face_short_range.tflite and face_landmarker.task."""
    return fixture_path("blaze_face_short_range.tflite").parent


@pytest.fixture(scope="session")
def demo_weights(tmp_path_factory) -> Path:
    """``DIR`` with ``emo.safetensors`` (tiny, random, VAE inside) and ``wav2vec2/``, built once
    per test session through the same code as ``python -m emo_core demo-weights``."""
    from emo_core.io.demo_weights import write_demo_weights

    folder = tmp_path_factory.mktemp("demo") / "weights"
    write_demo_weights(folder, seed=0)
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module: 2 shared cores, and counts/equalities that must not
    depend on how work is split across threads. Restores the previous count afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
