"""Help formatting shared by every sub-command: each default printed once, and only when true.

argparse's ``ArgumentDefaultsHelpFormatter`` appends ``(default: X)`` to every option, which prints
``(default: None)`` for options whose real default is computed later (and already explained in
their help) and a second default after help texts that state their own. This formatter appends the
default only when the help does not mention one and the default is a concrete value.

Imports only the standard library: ``python -m emo_core --help`` must stay instant.
"""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == [] or default is argparse.SUPPRESS
        if unset or not action.option_strings or "default" in text.lower():
            return text
        return f"{text} (default: %(default)s)"
