"""safe_load: safetensors/pickle reading without code execution, atomic safetensors writing."""

from __future__ import annotations

import pickle

import pytest
import torch

from emo_core.errors import CheckpointError
from emo_core.io.safe_load import (
    load_state_dict,
    read_safetensors_metadata,
    read_safetensors_shapes,
    save_safetensors_atomic,
)


class _WritesMarker:
    """Unpickling this object would create ``marker`` (``open(marker, "w")``)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tensors():
    gen = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(3, 4, generator=gen), "b.bias": torch.randn(5, generator=gen)}


def test_safetensors_round_trip_with_metadata_and_no_temp_files(tmp_path):
    path = save_safetensors_atomic(_tensors(), tmp_path / "w.safetensors", {"k": "v"})
    loaded = load_state_dict(path)
    assert loaded.keys() == _tensors().keys()
    for key, value in _tensors().items():
        assert torch.equal(loaded[key], value)
    assert read_safetensors_metadata(path) == {"k": "v"}
    assert read_safetensors_shapes(path) == {"a.weight": (3, 4), "b.bias": (5,)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_overwrite_is_atomic_and_failed_write_keeps_old_file(tmp_path):
    path = save_safetensors_atomic(_tensors(), tmp_path / "w.safetensors")
    before = path.read_bytes()
    with pytest.raises(AttributeError):  # a non-tensor value fails while preparing
        save_safetensors_atomic({"x": "not a tensor"}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_save_refuses_bad_suffix_and_metadata(tmp_path):
    with pytest.raises(CheckpointError, match=r"\.safetensors"):
        save_safetensors_atomic(_tensors(), tmp_path / "w.ckpt")
    with pytest.raises(ValueError, match="str -> str"):
        save_safetensors_atomic(_tensors(), tmp_path / "w.safetensors", {"n": 1})


def test_ckpt_state_dict_nesting_is_unwrapped_and_non_tensors_dropped(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {**_tensors(), "step": 3}, "global_step": 10}, path)
    loaded = load_state_dict(path)
    assert sorted(loaded) == ["a.weight", "b.bias"]
    assert torch.equal(loaded["a.weight"], _tensors()["a.weight"])


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth"
    payload = {"w": torch.ones(2), "evil": _WritesMarker(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(payload, handle)
    with pytest.raises(CheckpointError, match="not a plain tensor checkpoint") as info:
        load_state_dict(path)
    assert "safetensors" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_truncated_file_names_the_file(tmp_path, suffix):
    good = tmp_path / f"good{suffix}"
    if suffix == ".safetensors":
        save_safetensors_atomic(_tensors(), good)
    else:
        torch.save(_tensors(), good)
    data = good.read_bytes()
    bad = tmp_path / f"cut{suffix}"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_state_dict(bad)
    assert str(bad) in str(info.value)


def test_missing_file_wrong_suffix_and_empty_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict(tmp_path / "nope.safetensors")
    other = tmp_path / "weights.txt"
    other.write_text("x")
    with pytest.raises(CheckpointError, match="suffix"):
        load_state_dict(other)
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(CheckpointError, match="no tensors"):
        load_state_dict(empty)
    listed = tmp_path / "list.pt"
    torch.save([torch.ones(1)], listed)
    with pytest.raises(CheckpointError, match="not a dictionary"):
        load_state_dict(listed)
