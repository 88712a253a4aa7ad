"""The library checks a preflight (or any front-end) calls before a model runs: output paths,
config bounds, settings against a checkpoint's temporal table. (The fuzz suites drive the same
checks through the CLI and the nodes.)"""

from __future__ import annotations

import os

import pytest

from emo_core.errors import CheckpointError, EMOInputError
from emo_core.io.validate import check_config_values, parse_config_json
from emo_core.paths import check_output_path
from emo_core.pipeline.settings import GenerationSettings


def test_output_path_refusals_name_the_path_and_create_nothing(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    (tmp_path / "folder.mp4").mkdir()
    os.mkfifo(tmp_path / "pipe.mp4")
    before = sorted(p.name for p in tmp_path.iterdir())
    bad = {tmp_path / "afile" / "out.mp4": "is a file, not a folder",
           tmp_path / "loop_a" / "out.mp4": "symbolic links",
           tmp_path / "folder.mp4": "is a folder",
           tmp_path / "pipe.mp4": "not a regular file",
           tmp_path / "out.avi": "must end in .mp4",
           tmp_path / ("n" * 250 + ".mp4"): "too long"}
    for path, reason in bad.items():
        with pytest.raises(EMOInputError, match=reason) as info:
            check_output_path(path)
        assert str(path.parent) in str(info.value)
    for system in ("/dev/full.mp4", "/proc/x.mp4", "/sys/x.mp4"):
        with pytest.raises(EMOInputError, match="system folder"):
            check_output_path(system)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_writable_output_paths_pass_and_nothing_is_created(tmp_path):
    assert check_output_path(tmp_path / "video.mp4") == tmp_path / "video.mp4"
    assert check_output_path(tmp_path / "new" / "deeper" / "video.MP4")  # folders come later
    assert list(tmp_path.iterdir()) == []


def test_config_json_depth_size_and_values_are_bounded():
    hint = "re-create it"
    with pytest.raises(CheckpointError, match="nests 100000 levels"):
        parse_config_json("[" * 100_000, "cfg", hint)
    with pytest.raises(CheckpointError, match="characters long"):
        parse_config_json(" " * 2_000_000, "cfg", hint)
    assert parse_config_json('{"a": [1, {"b": 2}]}', "cfg", hint) == {"a": [1, {"b": 2}]}
    for bad, where in (({"unet": {"block_out_channels": [-8]}}, r"unet.block_out_channels\[0\]"),
                       ({"context": {"tokens": 2**40}}, "context.tokens"),
                       ({"x": float("nan")}, "x = nan"), ({"l": list(range(300))}, "300 entries")):
        with pytest.raises(CheckpointError, match=where):
            check_config_values(bad, "cfg", hint)
    check_config_values({"unet": {"block_out_channels": [320, 640]}, "scale": 0.18}, "cfg", hint)


def test_settings_follow_the_checkpoint_temporal_table():
    config = {"motion_frames": 4, "motion_max_frames": 32}
    assert GenerationSettings().for_model(config).motion_frames == 4  # default: the checkpoint's
    assert GenerationSettings().for_model({"motion_frames": 2}).motion_frames == 2
    GenerationSettings(frames_per_clip=28, motion_frames=0).for_model(config)
    # The first clip carries the checkpoint's 4 zero motion frames even when motion_frames=0.
    with pytest.raises(EMOInputError, match="frames_per_clip <= 28"):
        GenerationSettings(frames_per_clip=32, motion_frames=0).for_model(config)
    with pytest.raises(EMOInputError, match="frames_per_clip <= 16"):
        GenerationSettings(frames_per_clip=20, motion_frames=16).for_model(config)
