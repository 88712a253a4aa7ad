"""benchmarks/bench_gpu.py is never run here (it needs CUDA): its arguments parse, without CUDA
it refuses with a clear message and exit code 2 before building any model, its warm-up video has
every clip layout of the timed video (so no graph compiles while the clock runs), and the
inductor cache folder is the documented one."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest
import torch

from benchmarks import bench_gpu


def test_arguments_parse():
    args = bench_gpu.parse_args([])
    assert args.preset == ["default", "fast"] and not args.compile and args.clips == 4
    args = bench_gpu.parse_args(["--preset", "fast", "--compile", "--clips", "2"])
    assert args.preset == ["fast"] and args.compile and args.clips == 2
    assert bench_gpu.PRESETS["fast"]["scheduler"] == "dpmpp-2m"
    assert bench_gpu.parse_args(["--cache-dir", "/x/y"]).cache_dir == Path("/x/y")
    with pytest.raises(SystemExit):
        bench_gpu.parse_args(["--clips", "0"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_refuses_without_cuda(capsys, monkeypatch):
    def no_models(*args, **kwargs):
        raise AssertionError("built models without CUDA")

    monkeypatch.setattr("benchmarks.bench_flops.build_pipeline", no_models)
    assert bench_gpu.main(["--compile"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize("family_name", ["emo", "hallo"])
def test_warmup_video_has_every_clip_layout_of_the_timed_video(family_name):
    from emo_core.families.emo import EMOFamily
    from emo_core.families.hallo import HalloFamily
    from emo_core.pipeline.settings import GenerationSettings

    if family_name == "emo":
        family, settings = EMOFamily(), GenerationSettings()
    else:
        family = HalloFamily(configs={"sampling": {"clip_frames": 16, "motion_frames": 2}})
        settings = family.resolve_settings(GenerationSettings())
    pipe = types.SimpleNamespace(family=family)
    clip = settings.frames_per_clip
    for frames in range(1, 6 * clip):
        warmup = bench_gpu.warmup_frames(pipe, settings, frames)
        timed = bench_gpu.clip_layouts(family.clip_spans(frames, settings))
        assert bench_gpu.clip_layouts(family.clip_spans(warmup, settings)) == timed, frames
        assert warmup <= min(frames, 3 * clip)  # never longer than a first + 2 later clips
    # The bench's own timed video (clips + 1 whole clips): first clip + one later clip.
    assert bench_gpu.warmup_frames(pipe, settings, 5 * clip) == 2 * clip


def test_inductor_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(bench_gpu.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    default = bench_gpu.inductor_cache_dir()
    assert default == tmp_path / ".cache" / "emo-portrait" / "inductor"
    assert os.environ[bench_gpu.CACHE_ENV] == str(default)  # what inductor reads
    monkeypatch.setenv(bench_gpu.CACHE_ENV, str(tmp_path / "env"))
    assert bench_gpu.inductor_cache_dir() == tmp_path / "env"
    assert bench_gpu.inductor_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert os.environ[bench_gpu.CACHE_ENV] == str(tmp_path / "arg")
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    assert cache_dir() == str(tmp_path / "arg")  # inductor's own lookup agrees
