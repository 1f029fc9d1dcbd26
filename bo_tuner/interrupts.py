"""Ctrl-C that is never lost: the command line's SIGINT handler remembers the interrupt as well as raising it.

Python raises KeyboardInterrupt wherever the main thread happens to be, and in a few places it cannot propagate:
a Ctrl-C landing in a callback (e.g. the import system's module-lock cleanup, while MLflow is being imported) is
printed as "Exception ignored in ..." and dropped, and the study then ran to its end. With :func:`install`, the
interrupt is also recorded, and :func:`check` — called by the study before and between trials — raises it again.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_requested = threading.Event()


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _requested.set()
    raise KeyboardInterrupt


def install() -> None:
    """Take over Ctrl-C in this process (the command line does), unless it is ignored (a background job) or
    someone else's handler is in place (a notebook, a host application)."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def check() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C arrived and was swallowed on its way."""
    if _requested.is_set():
        raise KeyboardInterrupt
