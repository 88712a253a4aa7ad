"""Where the EchoMimic golden fixture lives: ``$EMO_ECHOMIMIC_FIXTURE``, else the in-repo copy
``tests/fixtures/echomimic_tiny`` (``tests/fixture_sets.py``; its README describes every tensor)."""

from __future__ import annotations

from pathlib import Path

import pytest


def echomimic_fixture() -> Path:
    """The fixture folder (``$EMO_ECHOMIMIC_FIXTURE`` may name an absent one: see
    ``skip_without_fixture``)."""
    from tests.fixture_sets import fixture_set

    return fixture_set("echomimic_tiny")


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


def convert_acc_fixture(out: Path) -> Path:
    """The fixture's acc weights converted with ``convert-echomimic --acc`` into ``out``."""
    import json

    from emo_core.cli.cmd_convert_echomimic import convert_echomimic

    kwargs = json.loads((echomimic_fixture() / "unet_additional_kwargs.json").read_text())
    return convert_echomimic(pretrained_weights(), out, acc=True, unet_kwargs=kwargs)
