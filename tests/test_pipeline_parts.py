"""Pipeline pieces that need no model: clip rule, guidance algebra, settings, mp4 writer."""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from emo_core.errors import EMOInputError
from emo_core.pipeline.clips import clip_spans, num_clips
from emo_core.pipeline.guidance import plan_guidance
from emo_core.pipeline.settings import GenerationSettings
from emo_core.pipeline.video import Mp4Writer, fps_fraction


@pytest.mark.parametrize("frames", [1, 11, 12, 13, 24, 100, 101])
def test_clip_rule_covers_every_frame_once(frames):
    spans = clip_spans(frames, 12)
    assert len(spans) == num_clips(frames, 12) == math.ceil((frames - 12) / 12) + 1
    assert sum(s.keep for s in spans) == frames
    kept = torch.cat([s.frame_indices(frames)[: s.keep] for s in spans])
    assert torch.equal(kept, torch.arange(frames))
    # padding frames of the last clip repeat the last real frame
    assert int(spans[-1].frame_indices(frames).max()) == frames - 1


def test_separate_guidance_matches_formula():
    u, r, ra = (torch.randn(1, 3, 4, 2, 2) for _ in range(3))
    plan = plan_guidance("separate", 2.5, 4.0)
    assert plan.reference_rows.tolist() == [False, True, True]
    assert plan.audio_rows.tolist() == [False, False, True]
    expected = u + 2.5 * (r - u) + 4.0 * (ra - r)
    # float32 sums of three terms with weights up to 4: 1e-5 is ~100 ulps at these magnitudes
    torch.testing.assert_close(plan.combine(torch.cat([u, r, ra])), expected, atol=1e-5, rtol=1e-5)


def test_joint_guidance_and_branch_pruning():
    u, ra = torch.randn(1, 2, 4, 2, 2), torch.randn(1, 2, 4, 2, 2)
    plan = plan_guidance("joint", 3.0, 99.0)
    assert plan.batch == 2
    torch.testing.assert_close(plan.combine(torch.cat([u, ra])), u + 3.0 * (ra - u))
    assert plan_guidance("separate", 1.0, 1.0).batch == 1  # no guidance: one forward only
    assert plan_guidance("separate", 2.0, 2.0).batch == 2  # r carries zero weight


def test_settings_validation_names_the_field():
    GenerationSettings().validate()
    with pytest.raises(EMOInputError, match="motion_frames \\+ frames_per_clip"):
        GenerationSettings(frames_per_clip=30, motion_frames=4).validate()
    with pytest.raises(EMOInputError, match="scheduler"):
        GenerationSettings(scheduler="plms").validate()
    with pytest.raises(EMOInputError, match="size"):
        GenerationSettings(size=500).validate()


def test_fps_fractions_are_exact():
    assert fps_fraction(29.97) == Fraction(2997, 100)  # same rational as the frame count
    assert fps_fraction(12.5) == 12.5 and fps_fraction(25) == 25


@pytest.mark.parametrize("fps", [25.0, 29.97, 12.5])
def test_mp4_writer_exact_frames_and_audio_length(tmp_path, fps):
    out = tmp_path / "v.mp4"
    audio = (np.random.default_rng(0).normal(0, 0.1, (2, 44100 * 3)).astype(np.float32), 44100)
    with Mp4Writer(out, fps, 64, 48, audio=audio) as writer:
        for _ in range(4):
            writer.write(np.zeros((10, 48, 64, 3), np.uint8))
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        audio_stream = container.streams.audio[0]
        audio_seconds = float(audio_stream.duration * audio_stream.time_base)
    assert frames == 40
    # audio is trimmed to the video length (3 s of input, 40 frames of video); one frame tolerance
    assert abs(audio_seconds - 40 / fps) <= 1 / fps
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_mp4_writer_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError), Mp4Writer(tmp_path / "v.mp4", 25, 64, 64) as writer:
        writer.write(np.zeros((3, 64, 64, 3), np.uint8))
        raise RuntimeError("cancelled mid-run")
    assert list(tmp_path.iterdir()) == []


def test_mp4_encoding_is_reproducible(tmp_path):
    """Same frames -> same decoded video, every time (x264's mbtree broke this: see video.py)."""
    rng = np.random.default_rng(1)
    coarse = rng.integers(0, 255, (40, 8, 8, 3)).astype(np.uint8)
    frames = coarse.repeat(8, axis=1).repeat(8, axis=2)  # blocky content, like demo-weight output
    decoded = []
    for i in range(4):
        with Mp4Writer(tmp_path / f"{i}.mp4", 25, 64, 64) as writer:
            writer.write(frames)
        with av.open(str(tmp_path / f"{i}.mp4")) as container:
            decoded.append(np.stack([f.to_ndarray(format="rgb24")
                                     for f in container.decode(video=0)]))
    assert all(np.array_equal(decoded[0], d) for d in decoded[1:])
