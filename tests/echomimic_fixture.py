"""Where the EchoMimic golden fixture lives: ``$EMO_ECHOMIMIC_FIXTURE``, else
``<repo>/../shared/fixtures/echomimic_tiny`` (its README describes every tensor). One function so
a later move of the default copy changes one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "echomimic_tiny"


def echomimic_fixture() -> Path:
    """The fixture folder (it may be absent: see ``skip_without_fixture``)."""
    return Path(os.environ.get("EMO_ECHOMIMIC_FIXTURE") or DEFAULT)


def pretrained_weights() -> Path:
    """EchoMimic's ``pretrained_weights/`` layout inside the fixture."""
    return echomimic_fixture() / "pretrained_weights"


skip_without_fixture = pytest.mark.skipif(
    not (echomimic_fixture() / "outputs.safetensors").is_file(),
    reason=f"EchoMimic golden fixture folder {echomimic_fixture()} is absent")


def max_error(a, b) -> float:
    """Max abs difference of two tensors of the same shape."""
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return float((a.float() - b.float()).abs().max())


def load_goldens():
    """``(inputs, outputs)`` dicts of the fixture's safetensors files."""
    from safetensors.torch import load_file

    folder = echomimic_fixture()
    return (load_file(str(folder / "inputs.safetensors")),
            load_file(str(folder / "outputs.safetensors")))
