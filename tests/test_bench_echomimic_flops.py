"""EchoMimic rows of ``benchmarks/bench_flops.py``: the meta count equals a real CPU run at tiny
size, and at SD1.5 size the acc variant (6 steps, 1 row) costs about a tenth of Hallo's 3,424
GFLOP x 40 steps per frame, the normal one (30 steps x 2 rows) several times the acc one."""

from __future__ import annotations

import json

import pytest
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks import bench_flops as bench
from benchmarks import echomimic_flops

HALLO_PER_FRAME = 3424 * 40


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every test here on one torch thread (see conftest.one_torch_thread)."""


def test_meta_count_equals_a_real_cpu_run_at_tiny_size():
    meta = list(echomimic_flops.lines(64, preset="tiny", device="meta"))
    with sdpa_kernel(SDPBackend.MATH):
        real = list(echomimic_flops.lines(64, preset="tiny", device="cpu"))
    assert real == meta
    assert [line["variant"] for line in meta] == ["normal", "acc"]
    assert all(line["split"]["backbone"] > 0 for line in meta)


def test_sd15_rows_printed_by_bench_flops(capsys, monkeypatch):
    # Only the EchoMimic rows: the EMO schemes are test_bench_flops.py's.
    monkeypatch.setattr(bench, "lines", lambda *args, **kwargs: iter(()))
    assert bench.main(["--video-seconds"]) == 0  # no whole-video rows
    rows = {line["variant"]: line for line in map(json.loads, capsys.readouterr().out.splitlines())}
    acc, normal = rows["acc"], rows["normal"]
    assert (acc["steps"], acc["rows"], normal["steps"], normal["rows"]) == (6, 1, 30, 2)
    assert 0.05 * HALLO_PER_FRAME < acc["gflops_per_frame"] < 0.15 * HALLO_PER_FRAME
    assert normal["gflops_per_frame"] > 5 * acc["gflops_per_frame"]
