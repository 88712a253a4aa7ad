"""Shared test helpers: fixture files, tiny seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixture_sets import fixture_path


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
    from tests.comfyui_harness import shared_demo_weights

    return shared_demo_weights(tmp_path_factory)


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module: 2 shared cores, and counts/equalities that must not
    depend on how work is split across threads. Restores the previous count afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
