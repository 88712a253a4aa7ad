"""Named presets (``--preset`` / the EMO Sampler's ``preset`` widget, issue 22): one table
(``emo_core.pipeline.settings.PRESETS``) expanded where the EMO family resolves the settings
(``for_model``), so the CLI, the Sampler and the Python API run the same settings; a setting
changed from its default keeps the user's value; families with their own sampling ignore a preset
with a warning; unknown names are refused naming ``--preset`` and the choices; the fast preset
costs what the README's table says (FLOPs on the meta device, ``bench_preset_quality.py``)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from emo_core.cli.main import build_parser
from emo_core.cli.settings_args import settings_from_args
from emo_core.errors import EMOInputError
from emo_core.pipeline.settings import PRESETS, SETTINGS, GenerationSettings

REPO = Path(__file__).resolve().parents[1]
BACKBONE = {"motion_frames": 4, "motion_max_frames": 24}  # an SD1.5 EMO checkpoint's
FILES = ["--checkpoint", "c", "--wav2vec", "w", "--mediapipe", "m", "--image", "i", "--audio",
         "a", "--out", "o.mp4"]


def _cli(*options: str) -> GenerationSettings:
    """The settings an EMO checkpoint runs with for these ``generate`` options."""
    parser, _ = build_parser()
    return settings_from_args(parser.parse_args(["generate", *FILES, *options])).for_model(
        BACKBONE)


@pytest.fixture(scope="module")
def sampler():
    from tests.comfyui_harness import import_pack_in_process

    return import_pack_in_process("node_sampler")["node_sampler"]


def _sampler_settings(sampler, **changes) -> GenerationSettings:
    """The settings an EMO checkpoint runs with from the EMO Sampler's widget defaults +
    ``changes`` (the node's settings, resolved as the pipeline resolves them)."""
    info = sampler.EMOSampler.GET_NODE_INFO_V1()
    inputs = {**info["input"]["required"], **info["input"].get("optional", {})}
    options = {name: inputs[name][1]["default"] for name in sampler.SAMPLER_WIDGETS
               if name != "decode_images"}
    options.update(changes)
    return sampler._settings(SimpleNamespace(size=512), SimpleNamespace(fps=25.0),
                             options).for_model(BACKBONE)


def test_the_presets_are_default_and_fast_and_fast_changes_only_known_settings():
    assert list(PRESETS) == ["standard", "fast"] and PRESETS["standard"] == {}
    assert PRESETS["fast"] == {"steps": 16, "scheduler": "dpmpp-2m"}
    for values in PRESETS.values():
        assert set(values) <= set(SETTINGS) - {"preset"}
        GenerationSettings(**values).validate()  # each value is one its field accepts
    assert SETTINGS["preset"].default == "standard"
    assert list(SETTINGS["preset"].spec.choices) == ["standard", "fast"]


def test_preset_fills_only_settings_left_at_their_default():
    fast = GenerationSettings(preset="fast").apply_preset()
    assert (fast.steps, fast.scheduler, fast.preset) == (16, "dpmpp-2m", "fast")
    assert fast.replace(steps=40, scheduler="ddim", preset="standard") == GenerationSettings()
    mine = GenerationSettings(preset="fast", steps=30).apply_preset()
    assert (mine.steps, mine.scheduler) == (30, "dpmpp-2m")  # the changed setting wins
    mine = GenerationSettings(preset="fast", scheduler="unipc").apply_preset()
    assert (mine.steps, mine.scheduler) == (16, "unipc")
    assert fast.apply_preset() == fast  # idempotent
    assert GenerationSettings().apply_preset() == GenerationSettings()
    # The Python API gets it too: for_model (the EMO family's resolve_settings) applies it.
    resolved = GenerationSettings(preset="fast").for_model({"motion_frames": 4})
    assert (resolved.steps, resolved.scheduler, resolved.motion_frames) == (16, "dpmpp-2m", 4)


def test_cli_preset_and_explicit_options():
    assert _cli() == GenerationSettings(motion_frames=4)
    assert _cli("--preset", "fast") == GenerationSettings(preset="fast", steps=16,
                                                          scheduler="dpmpp-2m", motion_frames=4)
    explicit = _cli("--preset", "fast", "--steps", "24", "--seed", "5")
    assert (explicit.steps, explicit.scheduler, explicit.seed) == (24, "dpmpp-2m", 5)


@pytest.mark.comfyui
def test_sampler_and_cli_give_the_same_settings(sampler):
    assert sampler.SAMPLER_WIDGETS[-1] == "preset"  # appended: saved workflows keep positions
    info = sampler.EMOSampler.GET_NODE_INFO_V1()
    assert "preset" in info["input"]["optional"]  # old API prompts without it still validate
    assert info["input"]["optional"]["preset"][1]["options"] == list(PRESETS)
    for widgets, options in (({}, ()), ({"preset": "fast"}, ("--preset", "fast")),
                             ({"preset": "fast", "steps": 24, "guidance_refresh": 1},
                              ("--preset", "fast", "--steps", "24", "--guidance-refresh", "1")),
                             ({"preset": "fast", "scheduler": "unipc"},
                              ("--preset", "fast", "--scheduler", "unipc"))):
        assert _sampler_settings(sampler, **widgets) == _cli(*options), widgets
    # An API prompt saved before the widget existed: absent = the default preset.
    assert _sampler_settings(sampler).preset == "standard"


@pytest.mark.comfyui
@pytest.mark.parametrize("bad", ["turbo", "", "FAST", None, 3])
def test_sampler_refuses_an_unknown_preset_naming_the_choices(sampler, bad):
    with pytest.raises(EMOInputError, match=r"preset.*standard, fast"):
        _sampler_settings(sampler, preset=bad)


def test_unknown_preset_is_refused_naming_the_option_and_the_choices(capsys):
    with pytest.raises(SystemExit) as stop:
        _cli("--preset", "turbo")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--preset" in err and "'standard', 'fast'" in err and "turbo" in err
    with pytest.raises(EMOInputError, match=r"unknown preset 'turbo' \(--preset.*standard, fast"):
        GenerationSettings(preset="turbo").apply_preset()
    with pytest.raises(EMOInputError, match=r"unknown preset 'turbo' \(--preset"):
        GenerationSettings(preset="turbo").validate()


def test_families_with_their_own_sampling_ignore_a_preset_with_a_warning():
    from emo_core.families.echomimic import EchoMimicFamily
    from emo_core.families.hallo import HalloFamily

    for family in (HalloFamily(), EchoMimicFamily()):
        assert family.ignored_settings(GenerationSettings()) == []
        warning = family.ignored_settings(GenerationSettings(preset="fast"))
        assert warning == [f"preset='fast' ({family.title} uses its own sampling; the presets "
                           "are measured on EMO weights)"]
    # Hallo keeps its steps (the preset is not applied): the user's 40, not the preset's 16.
    hallo = HalloFamily()
    assert hallo.hallo_sampling(GenerationSettings(preset="fast")).steps == 40


def _readme_gflop(row_start: str) -> tuple[float, float]:
    """(GFLOP / frame-step, GFLOP / frame) of the README preset table row ``row_start``."""
    readme = REPO.joinpath("README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith(row_start))
    cells = [cell.strip(" *") for cell in row.split("|")[1:-1]]
    return tuple(float(re.sub(r"[^\d.]", "", cells[i])) for i in (2, 3))


def test_fast_preset_costs_what_the_readme_table_says(one_torch_thread):
    from benchmarks.bench_preset_quality import flops

    rows = {row["candidate"]: row for row in flops(names=["default", "fast"])}
    default, fast = rows["default"], rows["fast"]
    assert (default["steps"], fast["steps"]) == (40, 16)
    assert fast["gflops_per_frame"] == pytest.approx(16 * fast["gflops_per_frame_step"],
                                                     abs=0.01)
    # The table rounds to 0.1 GFLOP.
    assert _readme_gflop("| default") == (pytest.approx(default["gflops_per_frame_step"], abs=0.06),
                                          pytest.approx(default["gflops_per_frame"], abs=0.6))
    assert _readme_gflop("| **fast**") == (pytest.approx(fast["gflops_per_frame_step"], abs=0.06),
                                           pytest.approx(fast["gflops_per_frame"], abs=0.6))
    # Per step a little dearer (per-clip parts over fewer steps, 6 of 16 steps run all three
    # guidance rows against 14 of 40), per frame well under half the default.
    assert fast["gflops_per_frame_step"] > default["gflops_per_frame_step"]
    assert fast["gflops_per_frame"] < 0.45 * default["gflops_per_frame"]
