"""Entry point of ``python -m emo_core``.

Each sub-command lives in its own module ``emo_core.cli.cmd_<name>`` exposing
``add_parser(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``. Modules are imported
lazily only for the command that runs, so ``--help`` stays fast and a broken optional dependency of
one command does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import EMOCancelled, EMOInputError

# Sub-command name -> module (relative to this package). Order is the order shown by --help.
COMMANDS: dict[str, str] = {
    "demo": ".cmd_demo",
    "generate": ".cmd_generate",
    "init-checkpoint": ".cmd_init_checkpoint",
    "demo-weights": ".cmd_demo_weights",
    "prepare-data": ".cmd_prepare_data",
    "train": ".cmd_train",
    "prove-learning": ".cmd_prove_learning",
    "convert-hallo": ".cmd_convert_hallo",
}

EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


def _available_commands() -> dict[str, object]:
    modules = {}
    for name, module_name in COMMANDS.items():
        try:
            modules[name] = importlib.import_module(module_name, __package__)
        except ModuleNotFoundError as error:
            # A command whose module is not written yet is simply not offered.
            if error.name and error.name.startswith(__package__ + ".cmd_"):
                continue
            raise
    return modules


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(
        # The name the user typed: the `emo-portrait` console script or `python -m emo_core`.
        prog="emo-portrait" if sys.argv[0].endswith("emo-portrait") else "python -m emo_core",
        description="EMO Portrait: one portrait + one audio clip -> talking/singing video.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = _available_commands()
    for module in modules.values():
        module.add_parser(subparsers)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(modules[args.command].run(args) or 0)
    except EMOInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EMOCancelled as error:
        print(f"cancelled: {error}", file=sys.stderr)
        return EXIT_CANCELLED
    except ModuleNotFoundError as error:
        # Optional dependencies (training: accelerate, tensorboard) are imported by the command.
        print(f"error: `{args.command}` needs the Python package {error.name!r}, which is not "
              f"installed; install it (training tools: pip install accelerate tensorboard)",
              file=sys.stderr)
        return EXIT_BAD_INPUT


def entry() -> None:
    """Console script ``emo-portrait`` (pyproject ``[project.scripts]``)."""
    sys.exit(main())
