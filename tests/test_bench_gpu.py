"""benchmarks/bench_gpu.py is never run here (it needs CUDA): its arguments parse, and without
CUDA it refuses with a clear message and exit code 2 before building any model."""

from __future__ import annotations

import pytest
import torch

from benchmarks import bench_gpu


def test_arguments_parse():
    args = bench_gpu.parse_args([])
    assert args.preset == ["default", "fast"] and not args.compile and args.clips == 4
    args = bench_gpu.parse_args(["--preset", "fast", "--compile", "--clips", "2"])
    assert args.preset == ["fast"] and args.compile and args.clips == 2
    assert bench_gpu.PRESETS["fast"]["scheduler"] == "dpmpp-2m"
    with pytest.raises(SystemExit):
        bench_gpu.parse_args(["--clips", "0"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_refuses_without_cuda(capsys, monkeypatch):
    def no_models(*args, **kwargs):
        raise AssertionError("built models without CUDA")

    monkeypatch.setattr("benchmarks.bench_flops.build_pipeline", no_models)
    assert bench_gpu.main(["--compile"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
