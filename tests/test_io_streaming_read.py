"""``io/streaming.iter_tensors``: reading a safetensors file tensor by tensor, converting
floating tensors to the run dtype WHILE reading (through one reused buffer) and checking the
values as stored. Files are written by ``safetensors`` itself; expected values are torch's own
``.to(dtype)`` of what ``safetensors`` reads back."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from emo_core.io import streaming
from emo_core.io.streaming import iter_tensors
from emo_core.io.validate import is_finite


@pytest.fixture
def small_chunk(monkeypatch):
    """A 4 KB conversion buffer, so a tensor of a few thousand elements crosses many pieces
    (and one piece ends inside the last element row)."""
    monkeypatch.setattr(streaming, "_CAST_CHUNK", 4096)


def _file(tmp_path):
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "big_half": torch.randn(37, 101, generator=generator).half(),  # 7,474 bytes: 2 pieces
        "float": torch.randn(3000, generator=generator),  # 12,000 bytes: 3 pieces
        "bf16": torch.randn(5, 7, generator=generator).bfloat16(),
        "index": torch.arange(10),  # integers are never converted
        "empty": torch.zeros(0, 4),
    }
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path))
    return path


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, None])
def test_converted_while_reading_equals_a_cast_of_the_stored_values(tmp_path, small_chunk,
                                                                    dtype):
    path = _file(tmp_path)
    stored = load_file(str(path))
    read = dict(iter_tensors(path, dtype=dtype))
    assert set(read) == set(stored)
    for name, value in stored.items():
        want = value.to(dtype) if dtype is not None and value.is_floating_point() else value
        assert read[name].dtype == want.dtype and read[name].shape == want.shape, name
        assert torch.equal(read[name], want), name


def test_check_sees_every_stored_value_before_conversion(tmp_path, small_chunk):
    """``check`` gets the stored dtype, every element exactly once (in pieces when converted):
    a value that only overflows in the run dtype is not what it checks."""
    path = _file(tmp_path)
    stored = load_file(str(path))
    seen: dict[str, list[torch.Tensor]] = {}
    dict(iter_tensors(path, dtype=torch.float16,
                      check=lambda name, values: seen.setdefault(name, []).append(values.clone())))
    for name, value in stored.items():
        if value.numel() == 0:  # nothing to check
            continue
        parts = seen[name]
        assert all(p.dtype == value.dtype for p in parts), name
        assert torch.equal(torch.cat([p.reshape(-1) for p in parts]), value.reshape(-1)), name
    assert len(seen["float"]) == 3 and len(seen["big_half"]) == 1  # fp16 is stored as fp16


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), None])
def test_is_finite_finds_one_bad_value_and_passes_overflowing_sums(dtype, bad):
    """The chunk sum finds NaN / inf; a sum that overflows (60,000 x 5 M in fp16) with every
    value finite is settled by the elementwise check, not refused."""
    values = torch.full((5_000_001,), 60_000.0 if dtype == torch.float16 else 1e30, dtype=dtype)
    if dtype == torch.float64:
        values.fill_(1e305)
    if bad is not None:
        values[4_999_999] = bad
    assert is_finite(values) is (bad is None)
