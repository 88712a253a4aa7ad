"""Entry point of ``python -m emo_core``.

Each sub-command lives in its own module ``emo_core.cli.cmd_<name>`` exposing
``add_parser(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``. Modules are imported
lazily only for the command that runs, so ``--help`` stays fast and a broken optional dependency of
one command does not break the others.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import sys
from pathlib import Path

from ..errors import EMOCancelled, EMOInputError, EMOTerminated
from . import stop_signals

logger = logging.getLogger(__name__)

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
    "convert-echomimic": ".cmd_convert_echomimic",
}

EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what shells report for a terminated process
# Options whose value may start with "-" (a negative keyframe time): argparse would take
# "--speed-keyframes -1:5" for two options, so such values are joined as "--opt=-1:5".
DASH_VALUE_OPTIONS = ("--speed-keyframes",)


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


def join_dash_values(argv: list[str]) -> list[str]:
    """``["--speed-keyframes", "-1:5"]`` -> ``["--speed-keyframes=-1:5"]`` (see DASH_VALUE_OPTIONS)."""
    out: list[str] = []
    for item in argv:
        if out and out[-1] in DASH_VALUE_OPTIONS and item.startswith("-") and item not in (
                "-h", "--help") and not item.startswith("--"):
            out[-1] = f"{out[-1]}={item}"
        else:
            out.append(item)
    return out


def one_line(error: BaseException) -> str:
    """An error's text on one line (details of multi-line messages joined with "; ")."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


# Write failures that are the machine's limits, not bugs: reported as one line, exit 2.
_WRITE_ERRNOS = (errno.EFBIG, errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _printable_streams() -> None:
    """A non-ASCII file name printed under LC_ALL=C (ASCII streams) must not crash the run."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):  # replaced or closed streams
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    _printable_streams()
    previous = stop_signals.install()
    try:
        return _main(argv)
    except OSError as error:
        if error.errno not in _WRITE_ERRNOS:
            raise
        print(f"error: could not write {error.filename or 'the output'} ({error.strerror}); "
              "free disk space, raise the file-size limit (ulimit -f) or write elsewhere",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cancelled: interrupted (Ctrl+C); nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except EMOTerminated as error:
        print(f"cancelled: {error}", file=sys.stderr)
        return getattr(error, "exit_code", EXIT_TERMINATED)
    finally:
        stop_signals.restore(previous)


def expand_home(args: argparse.Namespace) -> None:
    """A leading ``~`` in a path option means the home folder, also when the shell did not
    expand it (``--out "~/x.mp4"``): checks and writes then use the same path (issue 23)."""
    for name, value in vars(args).items():
        if isinstance(value, Path) and str(value).startswith("~"):
            with contextlib.suppress(RuntimeError):  # no home known: the path stays as typed
                setattr(args, name, value.expanduser())


def _main(argv: list[str] | None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(join_dash_values(list(sys.argv[1:] if argv is None else argv)))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    expand_home(args)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(modules[args.command].run(args) or 0)
    except EMOInputError as error:
        logger.debug("full error text: %s", error)
        print(f"error: {one_line(error)}", file=sys.stderr)
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
