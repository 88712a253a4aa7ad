"""`python -m emo_core --help` and every sub-command's `--help`: instant (lazy imports), every
option documented, each default printed once and true."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from benchmarks.bench_startup import REPO, measure
from emo_core.cli.main import COMMANDS, build_parser

HEAVY = ("torch", "diffusers", "transformers", "numpy", "av", "mediapipe", "PIL", "tqdm")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser, _ = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_building_the_parser_imports_nothing_heavy():
    """Importing every cmd_* module and building the parser must not import torch & co: that is
    what made --help take ~10 s and 616 MB."""
    code = ("import sys; from emo_core.cli.main import build_parser; build_parser(); "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_is_instant_and_small(command):
    """Under 1 s of CPU and 100 MB peak RSS per --help (measured: ~0.06 s, ~15 MB), in a fresh
    process each; CPU time, not wall time, so a busy machine does not make it flaky."""
    result = measure([command, "--help"] if command else ["--help"])
    assert result["rc"] == 0, result["stderr"]
    assert "usage:" in result["stdout"]
    assert result["cpu_s"] < 1.0, result
    assert result["peak_mb"] < 100, result


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_documented_and_each_default_printed_once(command):
    parser = _subparsers()[command]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help.strip(), f"{command} {action.option_strings}: no help"
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    # One block per option: from its flag at the start of a line to the next option's.
    for block in re.split(r"\n(?=  -)", text)[1:]:
        assert block.lower().count("default") <= 1, f"{command}: default printed twice:\n{block}"


def test_printed_defaults_are_the_parsers_defaults():
    """The formatter appends the real default; nothing else claims one that differs."""
    for command, parser in _subparsers().items():
        text = "".join(parser.format_help().split())  # wrapping may split at hyphens
        for action in parser._actions:
            unset = action.default in (None, False, [], argparse.SUPPRESS)
            if action.option_strings and not unset and "default" not in action.help.lower():
                expected = "".join(f"(default: {action.default})".split())
                assert expected in text, (command, action.dest)


def test_demo_help_states_the_defaults_the_demo_uses():
    from emo_core.cli import cmd_demo
    from emo_core.training.prove_learning import ProofPlan

    text = " ".join(_subparsers()["demo"].format_help().split())
    assert f"(default {cmd_demo.DEMO_STEPS}; {cmd_demo.CARTOON_STEPS} with" in text
    assert f"(default {cmd_demo.DEMO_SIZE};" in text
    # The cartoon demo runs the proof's architecture (clip and motion frames come from its plan);
    # only the step count is its own (fewer, measured to give the same r).
    assert ProofPlan().size == cmd_demo.CARTOON_SIZE


def test_fps_help_states_the_range_that_is_accepted():
    from emo_core.errors import EMOInputError
    from emo_core.pipeline.settings import FPS_RANGE, GenerationSettings

    for command in ("generate", "demo"):
        text = " ".join(_subparsers()[command].format_help().split())
        assert f"{FPS_RANGE[0]:g} to {FPS_RANGE[1]:g}" in text, command
        assert "any value" not in text
    for fps in FPS_RANGE:
        GenerationSettings(fps=fps).validate()
    for fps in (0.0, FPS_RANGE[0] - 0.01, FPS_RANGE[1] + 0.01):
        with pytest.raises(EMOInputError, match="fps"):
            GenerationSettings(fps=fps).validate()


def test_prove_learning_does_not_default_into_the_committed_results():
    parser = _subparsers()["prove-learning"]
    out = parser.parse_args([]).out
    assert "benchmarks" not in out.parts and not out.is_absolute()
    seed = next(a for a in parser._actions if a.dest == "seed")
    assert "seed" in seed.help
