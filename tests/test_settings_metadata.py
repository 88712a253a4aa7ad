"""One definition per generation setting: the ``generate`` options and the EMO Sampler widgets are
built from the GenerationSettings field metadata, schedulers from one registry.

Expected values are derived from the metadata (every field, every attribute) and, where a user
depends on them, stated literally (the README's documented defaults and choices). The node checks
build the real ComfyUI 0.3.75 schema in process (``GET_NODE_INFO_V1``, what /object_info serves).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest
import torch

from emo_core.cli.main import build_parser
from emo_core.cli.settings_args import option_name
from emo_core.errors import EMOInputError
from emo_core.pipeline import scheduler as scheduler_module
from emo_core.pipeline.scheduler import SCHEDULERS, SchedulerEntry, make_scheduler
from emo_core.pipeline.settings import SETTINGS, GenerationSettings

REPO = Path(__file__).resolve().parents[1]
SCHEDULER_NAMES = ["ddim", "ddim-vpred-trailing", "dpmpp-2m", "euler", "unipc"]


def _generate_actions() -> dict[str, argparse.Action]:
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["generate"]._actions}


def _node_inputs(module) -> dict[str, tuple[str, dict]]:
    """name -> (type, options) of every input, in schema order (as /object_info serves them)."""
    info = module.GET_NODE_INFO_V1()
    out = {}
    for group in ("required", "optional"):
        for name in info["input_order"].get(group, []):
            spec = info["input"][group][name]
            out[name] = (spec[0] if isinstance(spec[0], str) else "COMBO", spec[1])
    return out


@pytest.fixture(scope="module")
def nodes():
    from tests.comfyui_harness import import_pack_in_process

    return import_pack_in_process("node_sampler", "node_audio_features", "node_frames_to_video",
                                  "node_encode_reference", "settings_inputs")


# --------------------------------------------------------------------------- CLI


def test_every_setting_is_a_generate_option_as_its_metadata_says():
    actions = _generate_actions()
    for name, item in SETTINGS.items():
        action = actions[name]
        assert action.option_strings == [option_name(name)]
        assert action.default == item.default, name
        if item.kind is bool:  # a switch (store_true): no type, the option alone turns it on
            assert action.nargs == 0 and action.const is True, name
        else:
            assert action.type is item.kind, name
        assert action.choices == (None if item.spec.choices is None
                                  else tuple(item.spec.choices)), name
        assert item.spec.help in action.help, name
        assert item.spec.range_text in action.help, name
        if item.default is None:
            assert f"(default: {item.spec.unset})" in action.help, name


def test_generate_defaults_and_choices_are_the_documented_ones():
    """The README's usage block states defaults and choice lists; the parser must agree."""
    actions = _generate_actions()
    readme = REPO.joinpath("README.md").read_text(encoding="utf-8")
    usage = readme[readme.index("python -m emo_core generate --checkpoint"):]
    usage = usage[:usage.index("```")]
    documented = re.findall(r"\[(--[a-z-]+) ([^\]\s]+)\]", usage)
    checked = 0
    for option, value in documented:
        dest = option[2:].replace("-", "_")
        if dest not in SETTINGS:
            continue
        action = actions[dest]
        if "|" in value:
            assert list(action.choices) == value.split("|"), option
        elif value[0].isdigit():
            assert action.default == action.type(value), option
        checked += 1
    assert checked >= 8, documented  # fps, steps, seed, modes, clip layout, scheduler, size...
    assert list(actions["scheduler"].choices) == SCHEDULER_NAMES
    assert (actions["steps"].default, actions["frames_per_clip"].default) == (40, 12)
    assert actions["motion_frames"].default is None  # the checkpoint's own count


def test_parsed_options_become_the_settings(tmp_path):
    from emo_core.cli.settings_args import settings_from_args

    parser, _ = build_parser()
    args = parser.parse_args([
        "generate", "--checkpoint", "c", "--wav2vec", "w", "--mediapipe", "m", "--image", "i",
        "--audio", "a", "--out", "o.mp4", "--steps", "7", "--motion-frames", "2",
        "--scheduler", "unipc", "--prediction-type", "v_prediction", "--decode-batch", "3"])
    settings = settings_from_args(args)
    assert settings == GenerationSettings(steps=7, motion_frames=2, scheduler="unipc",
                                          prediction_type="v_prediction", decode_batch=3)


def test_no_front_end_declares_a_setting_by_hand():
    """Grep: a settings field appears as a generate/demo option or a node input only through the
    builders (emo_core/cli/settings_args.py, nodes/settings_inputs.py). Other commands (train,
    init-checkpoint) have a --seed of their own meaning."""
    files = [*REPO.glob("nodes/*.py"), REPO / "emo_core/cli/cmd_generate.py",
             REPO / "emo_core/cli/cmd_demo.py"]
    for file in files:
        text = file.read_text(encoding="utf-8")
        for name in SETTINGS:
            for pattern in (rf'Input\(\s*"{name}"', rf'add_argument\(\s*"{option_name(name)}"'):
                assert not re.search(pattern, text), f"{file.name} declares {name} by hand"


# --------------------------------------------------------------------------- node


@pytest.mark.comfyui
def test_every_sampler_widget_is_its_setting_as_the_metadata_says(nodes):
    widgets = nodes["node_sampler"].SAMPLER_WIDGETS
    inputs = _node_inputs(nodes["node_sampler"].EMOSampler)
    assert [n for n in inputs if n in widgets] == list(widgets)  # saved workflows: by position
    shown = {name for name, item in SETTINGS.items() if item.spec.node}
    assert set(widgets) - {"decode_images"} == shown
    assert SETTINGS.keys() - shown == {"fps", "size", "prediction_type"}
    for name in shown:
        _check_widget(inputs[name], SETTINGS[name], nodes["settings_inputs"].unset_value)
    # Hard values a user sees.
    assert inputs["steps"][1]["default"] == 40 and inputs["steps"][1]["max"] == 1000
    assert inputs["seed"][1]["control_after_generate"] is True
    assert inputs["scheduler"][1]["options"] == SCHEDULER_NAMES
    motion = inputs["motion_frames"][1]
    assert (motion["default"], motion["min"], motion["max"]) == (-1, -1, 31)
    assert "-1 = the checkpoint's own count" in motion["tooltip"]


def _check_widget(widget, item, unset_value):
    kind, options = widget
    spec = item.spec
    assert spec.help[0].upper() + spec.help[1:] in options["tooltip"], item.name
    if spec.choices is not None:
        assert kind == "COMBO" and options["options"] == list(spec.choices), item.name
        assert options["default"] == item.default, item.name
        return
    if item.kind is bool:
        assert kind == "BOOLEAN" and options["default"] is item.default, item.name
        return
    assert kind == {int: "INT", float: "FLOAT"}[item.kind], item.name
    unset = item.default is None
    assert options["default"] == (unset_value(item.name) if unset else item.default), item.name
    assert options["min"] == (unset_value(item.name) if unset else spec.minimum), item.name
    assert options["max"] == spec.maximum, item.name
    if spec.step is not None:
        assert options["step"] == spec.step, item.name


@pytest.mark.comfyui
def test_fps_size_and_decode_batch_of_other_nodes_come_from_the_same_fields(nodes):
    audio = _node_inputs(nodes["node_audio_features"].EMOAudioFeatures)
    video = _node_inputs(nodes["node_frames_to_video"].EMOFramesToVideo)
    reference = _node_inputs(nodes["node_encode_reference"].EMOEncodeReference)
    unset_value = nodes["settings_inputs"].unset_value
    for widget, name in ((audio["fps"], "fps"), (video["fps"], "fps"),
                         (video["decode_batch"], "decode_batch"), (reference["size"], "size")):
        _check_widget(widget, SETTINGS[name], unset_value)
    assert (video["fps"][1]["default"], video["fps"][1]["max"]) == (25.0, 120.0)
    assert "Must equal the fps of Wav2Vec Audio Features" in video["fps"][1]["tooltip"]
    assert (reference["size"][1]["default"], reference["size"][1]["step"]) == (512, 64)


@pytest.mark.comfyui
def test_sampler_unset_motion_frames_takes_the_checkpoints_count(nodes):
    from types import SimpleNamespace

    sampler = nodes["node_sampler"]
    inputs = _node_inputs(sampler.EMOSampler)
    options = {name: inputs[name][1]["default"] for name in sampler.SAMPLER_WIDGETS
               if name not in ("decode_images", "decode_batch")}
    settings = sampler._settings(SimpleNamespace(size=64), SimpleNamespace(fps=12.5), options)
    assert settings.motion_frames is None and settings.fps == 12.5 and settings.size == 64
    assert settings.for_model({"motion_frames": 2, "motion_max_frames": 32}).motion_frames == 2
    options["motion_frames"] = 0
    assert sampler._settings(SimpleNamespace(size=64), SimpleNamespace(fps=25.0),
                             options).motion_frames == 0


# --------------------------------------------------------------------------- one change, both


@pytest.mark.comfyui
def test_changing_a_fields_metadata_changes_the_cli_and_the_node(nodes, monkeypatch):
    item = SETTINGS["steps"]
    spec = dataclasses.replace(item.spec, help="patched steps help", maximum=77)
    monkeypatch.setitem(SETTINGS, "steps", dataclasses.replace(item, default=17, spec=spec))
    action = _generate_actions()["steps"]
    assert action.default == 17 and "patched steps help; 1 to 77" in action.help
    widget = _node_inputs(nodes["node_sampler"].EMOSampler)["steps"][1]
    assert (widget["default"], widget["max"]) == (17, 77)
    assert widget["tooltip"].startswith("Patched steps help.")
    with pytest.raises(EMOInputError, match="steps must be an integer between 1 and 77"):
        GenerationSettings(steps=78).validate()


@pytest.mark.comfyui
def test_a_registered_scheduler_reaches_both_choice_lists_and_builds(nodes, monkeypatch):
    monkeypatch.setitem(SCHEDULERS, "heun", SchedulerEntry("HeunDiscreteScheduler", "Heun"))
    assert "heun" in _generate_actions()["scheduler"].choices
    assert "heun" in _node_inputs(nodes["node_sampler"].EMOSampler)["scheduler"][1]["options"]
    GenerationSettings(scheduler="heun").validate()
    assert type(make_scheduler("heun")).__name__ == "HeunDiscreteScheduler"


# --------------------------------------------------------------------------- schedulers


# What each name built before the registry (the configs the README's numbers were made with).
BEFORE = {
    "ddim": {"clip_sample": False, "set_alpha_to_one": False, "prediction_type": "epsilon"},
    "ddim-vpred-trailing": {"clip_sample": False, "set_alpha_to_one": False,
                            "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
                            "timestep_spacing": "trailing"},
    "dpmpp-2m": {"algorithm_type": "dpmsolver++", "solver_order": 2,
                 "prediction_type": "epsilon"},
    "euler": {"prediction_type": "epsilon"},
    "unipc": {"prediction_type": "epsilon"},
}


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_each_registered_scheduler_builds_and_steps(name):
    import diffusers

    assert list(SCHEDULERS) == SCHEDULER_NAMES
    scheduler = make_scheduler(name, "epsilon")
    assert isinstance(scheduler, getattr(diffusers, SCHEDULERS[name].class_name))
    expected = {**scheduler_module.SD15_SCHEDULE, **BEFORE[name]}
    assert {k: scheduler.config[k] for k in expected} == expected
    scheduler.set_timesteps(4)
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sample = sample * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(sample, t)
        sample = scheduler.step(0.1 * model_input, t, sample).prev_sample
    assert torch.isfinite(sample).all()
    if name == "ddim":  # the checkpoint's prediction type is read through
        assert make_scheduler(name, "v_prediction").config.prediction_type == "v_prediction"


def test_unknown_scheduler_names_the_choices():
    for call in (lambda: make_scheduler("plms"),
                 lambda: GenerationSettings(scheduler="plms").validate()):
        with pytest.raises(EMOInputError, match="plms") as error:
            call()
        assert all(name in str(error.value) for name in SCHEDULER_NAMES), error.value
