"""How the command line's study stops from outside: Ctrl-C that is never lost, and the end of ``mlflow run``.

Python raises KeyboardInterrupt wherever the main thread happens to be, and in a few places it cannot propagate:
a Ctrl-C landing in a callback (e.g. the import system's module-lock cleanup, while MLflow is being imported) is
printed as "Exception ignored in ..." and dropped, and the study then ran to its end. With :func:`install`, the
interrupt is also recorded, and :func:`check` — called by the study before and between trials — raises it again.

:func:`stop_with_launcher`: a study started by ``mlflow run`` ends, as on SIGTERM, when that process is killed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

_requested = threading.Event()
_stopping = threading.Event()  # an interrupt is being handled: a SIGTERM must not cut its clean-up short
_atomic_depth = 0  # inside :func:`atomic`: a signal is recorded, and raised by :func:`check` after the block


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _requested.set()
    if _atomic_depth:
        return
    _stopping.set()
    raise KeyboardInterrupt  # a second Ctrl-C during the clean-up too: the user insists


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _stopping.is_set():  # `mlflow run` answers a Ctrl-C that reached us both with a SIGTERM to us
        return
    _requested.set()
    if _atomic_depth:
        return
    _stopping.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def atomic() -> Iterator[None]:
    """A block an interrupt handled here must not cut in two — creating a trial's run and handing it to a worker,
    recording a result: a KeyboardInterrupt in between left a run RUNNING that no one would end, or one inside an
    MLflow write left its sqlite transaction open, so the clean-up's own writes failed with "database is locked".
    The interrupt is recorded and :func:`check` (called right after) raises it."""
    global _atomic_depth
    _atomic_depth += 1
    try:
        yield
    finally:
        _atomic_depth -= 1


def install() -> None:
    """Take over Ctrl-C in this process (the command line does), unless it is ignored (a background job) or
    someone else's handler is in place (a notebook, a host application)."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def begin() -> None:
    """A Python caller's study starts: an interrupt that ended an earlier study in this process (a notebook's) is
    forgotten, so :func:`check` does not stop this one at once. The command line's (:func:`install`) is kept: it
    may have come while the study was being set up."""
    if signal.getsignal(signal.SIGINT) is not _on_sigint:
        _stopping.clear()
        _requested.clear()


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """A SIGTERM (a batch scheduler, ``kill PID``, :func:`stop_with_launcher`) ends the block like Ctrl-C does, and
    both wait for the end of an :func:`atomic` block.

    The command line took over Ctrl-C at its start (:func:`install`). A Python caller's study (a script, a
    notebook's interrupt button) had Python's own handler, which raised inside an :func:`atomic` block too — a trial's
    run left RUNNING, a sqlite write left open: Python's handler is replaced for the block and put back after it.
    Someone else's handler, or an ignored SIGINT, is left alone.
    """
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        yield
        return

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous is not _on_sigterm:
        begin()
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """The clean-up after an interrupt (stop workers, mark runs KILLED, end the study's run): from here on a
    SIGTERM no longer interrupts — ``mlflow run`` sends its child one right after a Ctrl-C reached them both, which
    cut the clean-up short and left runs RUNNING. A signal handled here sets this itself, so the moments before
    the block are covered too. A second Ctrl-C still interrupts: the user insists."""
    _stopping.set()
    yield


def requested() -> bool:
    """Whether a Ctrl-C (or SIGTERM) has arrived in this process."""
    return _requested.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C (or SIGTERM) arrived and was swallowed on its way or held by
    :func:`atomic`."""
    if _requested.is_set():
        raise KeyboardInterrupt


_launcher_ended = threading.Event()
_SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ksh"})


def _launcher() -> Any:
    """The ``mlflow run`` process that started this one (a psutil Process), or None. MLflow runs the entry point
    with ``bash -c``, which stays between us when the command is compound (an environment's activation first)."""
    import psutil

    process = psutil.Process().parent()
    while process is not None and process.pid > 1 and process.name() in _SHELLS:
        process = process.parent()
    if process is None or process.pid <= 1:
        return None
    args = process.cmdline()
    mlflow = any(os.path.basename(a) == "mlflow" for a in args) or any(
        a == "-m" and b == "mlflow" for a, b in itertools.pairwise(args))
    return process if mlflow and "run" in args else None


def stop_with_launcher() -> None:
    """Under ``mlflow run`` (``MLFLOW_RUN_ID`` set): when that process is gone, SIGTERM this one.

    ``kill PID`` of ``mlflow run`` (a scheduler's time-out, a user) ends the launcher at once and leaves its child
    running — the study trained on without anyone watching, finished runs MLflow showed as the launcher's, and
    refused ``mlflow run . -P resume=<id>`` while it lived. A thread watches the launcher (by pid and start time);
    once it has gone, the study stops as on SIGTERM: the trial in flight and the study end KILLED, resumable.
    The command line then ends the launcher's own run (``<study>-resume`` under a resume) KILLED too
    (:func:`launcher_ended`): nobody else would.
    """
    if not os.environ.get("MLFLOW_RUN_ID") or sys.platform == "win32":
        return
    try:
        launcher = _launcher()
    except Exception as exc:  # no psutil, /proc hidden: the launcher is not watched
        logger.debug("the mlflow run process is not watched (%s)", exc)
        return
    if launcher is None:
        return

    def stop() -> None:
        _launcher_ended.set()
        with contextlib.suppress(OSError, ValueError):  # stderr may have gone with the launcher
            print(f"bo-tuner: the `mlflow run` process that started this study (pid {launcher.pid}) has ended; "
                  "stopping the study", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    from bo_tuner.pool import when_gone

    when_gone(launcher, stop, name="bo_tuner-launcher-watch")


def launcher_folder() -> str | None:
    """The working directory of the ``mlflow run`` process that started this one (which runs the project in the
    project's own folder), or None when there is none or it cannot be read."""
    if not os.environ.get("MLFLOW_RUN_ID"):
        return None
    try:
        launcher = _launcher()
        return str(launcher.cwd()) if launcher is not None else None
    except Exception:  # no psutil, /proc hidden, the launcher gone
        return None


def launcher_ended() -> bool:
    """Whether :func:`stop_with_launcher` saw the ``mlflow run`` process end."""
    return _launcher_ended.is_set()
