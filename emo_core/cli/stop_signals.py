"""SIGINT / SIGTERM / SIGHUP / SIGQUIT for the command line: stop a run cleanly, even when Python swallows the raise.

A signal handler's exception is raised wherever the main thread happens to be; when that is a
``__del__`` or a callback from C (PyAV's log hook, a regex finaliser) Python prints "Exception
ignored" and carries on, and the run would finish as if nothing happened. So the handler records
the signal as well as raising, :func:`raise_if_stopped` (the ``cancel`` callback the commands
hand to the pipeline, checked before every model call and denoising step) raises it again, and
the swallowed first raise is not printed as a traceback (``sys.unraisablehook``).
"""

from __future__ import annotations

import signal
import sys

from ..errors import EMOTerminated

_received: list[int] = []  # signals seen since install(); a list so handlers need no global


# Stop signals besides SIGINT: a closed terminal (SIGHUP) and Ctrl+\ (SIGQUIT) must clean up
# like SIGTERM does (their default action would leave the temporary .part file behind).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGQUIT")
                     if hasattr(signal, name))


def _stop(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    stop = EMOTerminated(f"stopped by {signal.Signals(signum).name}; nothing was written")
    stop.exit_code = 128 + int(signum)  # what shells report for a process ended by that signal
    raise stop


def _handler(signum, frame) -> None:
    _received.append(signum)
    _stop(signum)


def _quiet_unraisable(unraisable) -> None:
    """Drop the "Exception ignored" report of a stop this module raised; report anything else."""
    if _received and isinstance(unraisable.exc_value, (KeyboardInterrupt, EMOTerminated)):
        return
    sys.__unraisablehook__(unraisable)


def install() -> dict:
    """SIGINT, SIGTERM, SIGHUP and SIGQUIT stop the run (cleanup runs; exit 130 / 143 / 129 /
    131); SIGXFSZ is ignored so
    hitting the file-size limit (ulimit -f) is an OSError (EFBIG) the writers clean up after,
    instead of killing the process with its temporary file left behind. Returns the previous
    handlers for :func:`restore`."""
    signals = [signal.SIGINT, *STOP_SIGNALS] + ([signal.SIGXFSZ] if hasattr(signal, "SIGXFSZ")
                                                 else [])
    previous = {sig: signal.getsignal(sig) for sig in signals}
    previous["unraisablehook"] = sys.unraisablehook
    _received.clear()
    sys.unraisablehook = _quiet_unraisable
    for sig in (signal.SIGINT, *STOP_SIGNALS):
        signal.signal(sig, _handler)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return previous


def restore(previous: dict) -> None:
    """Give in-process callers (tests) their handlers back."""
    previous = dict(previous)
    sys.unraisablehook = previous.pop("unraisablehook", sys.__unraisablehook__)
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    _received.clear()


def raise_if_stopped() -> bool:
    """The pipeline's ``cancel`` callback: raises the stop of a signal whose first raise was
    swallowed; returns False (go on) otherwise."""
    if _received:
        _stop(_received[0])
    return False
